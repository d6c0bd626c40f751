# frozen_string_literal: true

# Posts one data collector message the way Chef Infra Client does, with
# Debian's Ruby and nothing but the standard library, so the exporter's
# endpoint is tested against Chef's client behaviour rather than Go's:
#
# * lib/chef/data_collector.rb send_to_data_collector: @http.post(nil,
#   message, headers) to data_collector.server_url exactly as configured,
#   headers Content-Type: application/json, x-data-collector-token and
#   x-data-collector-auth: version=1.0, through Chef::HTTP::SimpleJSON;
# * lib/chef/http/simple_json.rb and its middlewares: JSONInput (the body
#   as JSON), JSONOutput (Accept: application/json), Decompressor
#   (Accept-Encoding: gzip;q=1.0,deflate;q=0.6,identity;q=0.3),
#   RemoteRequestID (X-REMOTE-REQUEST-ID); lib/chef/http/http_request.rb
#   adds X-Chef-Version and the User-Agent;
# * lib/chef/http.rb retrying_http_errors: a 5xx is retried
#   http_retry_count (5) times after sleeping 1 + 2**n + rand(2**n)
#   seconds; send_http_request: a redirected POST raises InvalidRedirect
#   ("Only GET and HEAD support redirects"), never follows it; any other
#   non-2xx raises Net::HTTPClientException / Net::HTTPFatalError.
#
#   ruby chef_http_client.rb METHOD URL TOKEN [BODY_FILE]
#
# RUNLENS_RETRY_SCALE (default 1) scales the retry sleeps so a test does not
# wait two minutes. Prints one JSON line per attempt and a last line
# {"result": ...}; exits 0 on a 2xx, 1 on an HTTP error, 3 on a redirect.
require 'json'
require 'net/http'
require 'securerandom'
require 'uri'

CHEF_VERSION = '18.4.12'
RETRY_COUNT = 5

method, url, token, body_file = ARGV
abort "usage: #{$PROGRAM_NAME} METHOD URL TOKEN [BODY_FILE]" unless token
scale = Float(ENV.fetch('RUNLENS_RETRY_SCALE', '1'))
uri = URI.parse(url)
# The message is a Hash in Chef; JSONInput encodes it.
body = body_file ? JSON.generate(JSON.parse(File.read(body_file))) : nil

headers = {
  'Content-Type' => 'application/json',
  'x-data-collector-token' => token,
  'x-data-collector-auth' => 'version=1.0',
  'Accept' => 'application/json',
  'Accept-Encoding' => 'gzip;q=1.0,deflate;q=0.6,identity;q=0.3',
  'X-REMOTE-REQUEST-ID' => SecureRandom.uuid,
  'X-Chef-Version' => CHEF_VERSION,
  'User-Agent' => "Chef Client/#{CHEF_VERSION} (ruby-#{RUBY_VERSION}; ohai-18.1.4; #{RUBY_PLATFORM}; +https://chef.io)",
}
headers['Content-Length'] = body.bytesize.to_s if body

def say(obj)
  puts JSON.generate(obj)
  $stdout.flush
end

attempts = 0
loop do
  attempts += 1
  response = Net::HTTP.start(uri.host, uri.port, use_ssl: uri.scheme == 'https', open_timeout: 5, read_timeout: 60) do |http|
    req = method == 'GET' ? Net::HTTP::Get.new(uri.request_uri, headers) : Net::HTTP::Post.new(uri.request_uri, headers)
    req.body = body if body && method != 'GET'
    http.request(req)
  end
  say(attempt: attempts, code: response.code.to_i, retry_after: response['Retry-After'])
  case response
  when Net::HTTPSuccess
    say(result: 'ok', code: response.code.to_i, attempts: attempts)
    exit 0
  when Net::HTTPRedirection
    say(result: 'InvalidRedirect', code: response.code.to_i,
        message: "#{method} request was redirected from #{url} to #{response['location']}. Only GET and HEAD support redirects.")
    exit 3
  when Net::HTTPServerError
    if RETRY_COUNT - attempts >= 0
      sleep((1 + (2**attempts) + rand(2**attempts)) * scale)
      next
    end
  end
  # response.error! in Chef::HTTP#request: the data collector logs it and
  # unregisters itself for the rest of the run.
  say(result: 'error', code: response.code.to_i, attempts: attempts)
  exit 1
end
