# frozen_string_literal: true

# Tests of the runlens Chef handler without Chef: the plain classes against
# the real RabbitMQ (127.0.0.1:5672, guest/guest, or RUNLENS_TEST_AMQP_URL),
# each test on its own exchange and queue, deleted afterwards, and the HTTP
# transport against a local HTTP server; then the Chef::Handler wrapper, the
# attributes file and the recipe against stand-ins that follow the real Chef
# classes (chef_stand_in.rb).
#
#   /usr/bin/ruby producers/chef/test/runlens_handler_test.rb
#
require 'minitest/autorun'
require 'bunny'
require 'json'
require 'securerandom'
require 'socket'
require 'tmpdir'
require 'uri'

require_relative 'support'

# Stand-ins for the Chef classes the wrapper, the attributes file and the
# recipe use, each following the real class (chef_stand_in.rb names the
# files): Chef::Handler#run_report_safely is Chef's own (rescue everything,
# log it as an error), so an exception escaping the handler shows up as an
# error line.
require_relative 'chef_stand_in'

require File.join(COOKBOOK, 'libraries', 'runlens_handler')

AMQP_URL = ENV.fetch('RUNLENS_TEST_AMQP_URL', 'amqp://guest:guest@127.0.0.1:5672/%2F')

# The broker side of a test: a durable fanout exchange declared as the
# handler declares it, and an exclusive queue bound to it.
class BrokerFixture
  attr_reader :exchange_name

  def initialize
    @conn = Bunny.new(AMQP_URL, logger: ::Logger.new(nil), automatically_recover: false)
    @conn.start
    @ch = @conn.create_channel
    @exchange_name = "runlens.test.chef.#{SecureRandom.hex(6)}"
    @exchange = @ch.fanout(@exchange_name, durable: true)
    @queue = @ch.queue('', exclusive: true)
    @queue.bind(@exchange)
  end

  # The URL without a password, and the password, as a node would configure them.
  def url
    u = URI.parse(AMQP_URL)
    u.password = nil
    u.to_s
  end

  def password
    URI.decode_www_form_component(URI.parse(AMQP_URL).password || 'guest')
  end

  # Waits for n messages; returns [properties, body] pairs.
  def take(n, within: 5)
    out = []
    deadline = Time.now + within
    while out.length < n && Time.now < deadline
      _info, props, body = @queue.pop
      if body
        out << [props, body]
      else
        sleep 0.02
      end
    end
    out
  end

  def count
    @queue.message_count
  end

  def close
    @exchange.delete
    @conn.close
  rescue StandardError
    nil
  end
end

# A TCP proxy to the broker that stops forwarding the broker's bytes once the
# client sent `marker`.
class FreezingProxy
  attr_reader :port, :frozen

  def initialize(marker)
    u = URI.parse(AMQP_URL)
    @upstream = [u.host || '127.0.0.1', u.port || 5672]
    @marker = marker.b
    @frozen = false
    @server = TCPServer.new('127.0.0.1', 0)
    @port = @server.addr[1]
    @socks = []
    @pumps = []
    @acceptor = Thread.new do
      client = @server.accept
      upstream = TCPSocket.new(*@upstream)
      @socks += [client, upstream]
      @pumps << Thread.new { pump(client, upstream, true) }
      @pumps << Thread.new { pump(upstream, client, false) }
    rescue IOError, SystemCallError
      nil
    end
  end

  # Threads of the proxy itself.
  def threads
    1 + @pumps.length
  end

  def close
    @acceptor.kill
    @pumps.each(&:kill)
    (@socks + [@server]).each do |s|
      s.close
    rescue IOError
      nil
    end
  end

  private

  def pump(src, dst, from_client)
    seen = ''.b
    loop do
      chunk = src.readpartial(65_536)
      if from_client
        seen = (seen + chunk)[-65_536..] || (seen + chunk)
        @frozen = true if seen.include?(@marker)
      elsif @frozen
        next
      end
      dst.write(chunk)
    end
  rescue IOError, SystemCallError
    nil
  end
end

module TestHelpers
  def config(**opts)
    Runlens::Config.new({ url: @broker&.url, password: @broker&.password, exchange: @broker&.exchange_name,
                          timeout: 2, connect_timeout: 2 }.merge(opts))
  end

  def unreachable(**opts)
    config(url: 'amqp://runlens@127.0.0.1:1/%2F', password: 'not-guest-s3cret', **opts)
  end

  def timed
    t = Time.now
    result = yield
    [result, Time.now - t]
  end
end

class ReportTest < Minitest::Test
  def test_success_report_has_the_brief_fields
    report = Runlens::Report.build(Stand.success_status, chef_version: '18.4.12', now: Time.utc(2024, 5, 1, 10, 0, 43))
    assert_equal 'web01.example.com', report['node_name']
    assert_equal 'web01.example.com', report['fqdn']
    assert_equal '10.0.0.11', report['ip_address']
    assert_equal 'production', report['environment']
    assert_equal 'success', report['status']
    assert_equal '2024-05-01T10:00:00.000Z', report['run_start_time']
    assert_equal '2024-05-01T10:00:42.500Z', report['run_end_time']
    assert_equal 42.5, report['run_elapsed_time']
    assert_equal %w(file[/etc/motd] package[nginx] service[nginx]), report['updated_resources'],
                 'each resource once, in order, even when two actions updated it'
    assert_equal 3, report['updated_resources_count']
    assert_equal '2024-05-01T10:00:43.000Z', report['report_generated_at']
    refute report.key?('error')
    assert_equal 'b4bd3e2a-0f5c-4bfb-8a67-11b1c1f6fb0a', report['run_id']
    assert_equal %w(base web), report['roles']
    assert_equal %w(role[base] role[web] recipe[runlens_handler]), report['run_list']
    assert_equal '18.4.12', report['chef_version']
    assert_equal 'ubuntu', report['platform']
    assert_equal %w(db01.example.com role:cache), report['depends_on']
    refute report.key?('policy_name'), 'absent optional fields are left out, not sent empty'
    # The body is plain JSON a non-Ruby consumer reads.
    assert_equal report, JSON.parse(Runlens::Report.generate(report))
  end

  def test_failure_report_carries_the_error
    report = Runlens::Report.build(Stand.failure_status)
    assert_equal 'failure', report['status']
    assert_equal 'Stand::EnclosingDirectoryDoesNotExist', report['error']['class']
    assert_match(/Parent directory/, report['error']['message'])
    assert_equal 2, report['error']['backtrace'].length
    assert_equal ['template[/etc/nginx/nginx.conf]'], report['updated_resources']
  end

  def test_policyfile_node_and_missing_pieces
    node = Stand::Node.new(name: 'pf01', policy_name: 'base', policy_group: 'prod', attrs: {})
    status = Stand::Status.new(node: node, start_time: Time.now - 5, end_time: nil, updated_resources: nil,
                               exception: nil, run_id: nil)
    report = Runlens::Report.build(status)
    assert_equal 'pf01', report['node_name']
    assert_equal 'base', report['policy_name']
    assert_equal 'prod', report['policy_group']
    assert_equal [], report['updated_resources'], 'the list is always sent, even empty'
    assert_equal 0, report['updated_resources_count']
    assert report['run_end_time'], 'a missing end time is the generation time'
    assert_operator report['run_elapsed_time'], :>=, 5
    %w(run_id depends_on roles fqdn).each { |k| refute report.key?(k), k }
  end

  def test_no_node_uses_the_configured_node_name
    status = Stand::Status.new(node: nil, start_time: Time.now, end_time: Time.now, exception: RuntimeError.new('boom'))
    report = Runlens::Report.build(status, fallback_node_name: 'fallback.example.com')
    assert_equal 'fallback.example.com', report['node_name']
    assert_equal 'failure', report['status']
    assert_equal 'RuntimeError', report['error']['class']
  end

  def test_invalid_utf8_and_huge_names_still_make_json
    long = Stand::Resource.new('execute', 'x' * 5000)
    bad = Stand::Resource.new('file', "/tmp/\xff\xfe".dup.force_encoding('BINARY'))
    status = Stand.success_status
    status.updated_resources = [long, bad]
    body = Runlens::Report.generate(Runlens::Report.build(status))
    parsed = JSON.parse(body)
    assert_operator parsed['updated_resources'][0].length, :<=, Runlens::Report::MAX_RESOURCE_CHARS
    assert parsed['updated_resources'][0].end_with?(']')
    assert parsed['updated_resources'][1].valid_encoding?
  end
end

class ScrubTest < Minitest::Test
  VECTORS = File.expand_path('../../testdata/scrub-vectors.json', __dir__)

  # The cases every producer's scrubber is held to (the Go and Python
  # suites read the same file).
  def test_shared_vectors
    vectors = JSON.parse(File.read(VECTORS))['vectors']
    assert_operator vectors.length, :>=, 5
    vectors.each { |v| assert_equal v['out'], Runlens.scrub(v['in']), v['in'] }
  end

  def test_error_capped_and_scrubbed
    error = RuntimeError.new("mysql --password=hunter2 failed #{'x' * 5000}")
    error.set_backtrace(Array.new(60) { |i| "/opt/chef/lib/x.rb:#{i}:in `go' https://u:pw@h/ #{'y' * 500}" })
    report = Runlens::Report.build(Stand::Status.new(node: Stand.web_node, end_time: Time.now, exception: error))
    e = report['error']
    assert_operator e['message'].length, :<=, Runlens::Report::MAX_MESSAGE_CHARS
    assert e['message'].start_with?('mysql --password=*** failed')
    assert_equal Runlens::Report::MAX_BACKTRACE_LINES, e['backtrace'].length
    assert(e['backtrace'].all? { |l| l.length <= Runlens::Report::MAX_BACKTRACE_LINE_CHARS && !l.include?('pw@') })
  end
end

# A local HTTP server answering every request with the next of answers
# ([status, headers]) and recording the requests (method, path, headers,
# body).
class StubHTTP
  attr_reader :requests, :port

  def initialize(*answers)
    @answers = answers
    @requests = []
    @server = TCPServer.new('127.0.0.1', 0)
    @port = @server.addr[1]
    @thread = Thread.new { loop { serve(@server.accept) } }
  end

  def url(path = '/data-collector/v0/')
    "http://127.0.0.1:#{@port}#{path}"
  end

  def close
    @thread.kill
    @server.close
  end

  private

  def serve(sock)
    loop do
      line = sock.gets or break
      method, path = line.split
      headers = {}
      while (h = sock.gets) && h != "\r\n"
        k, v = h.split(':', 2)
        headers[k.downcase] = v.strip
      end
      body = sock.read(headers['content-length'].to_i)
      @requests << [method, path, headers, body]
      code, extra = @answers.length > 1 ? @answers.shift : @answers.first
      out = "HTTP/1.1 #{code} X\r\nContent-Length: 0\r\n"
      (extra || {}).each { |k, v| out << "#{k}: #{v}\r\n" }
      sock.write("#{out}\r\n")
    end
  rescue IOError, SystemCallError
    nil
  ensure
    sock.close
  end
end

# The http transport: Net::HTTP to the exporter's data collector endpoint,
# as Chef's data collector posts (lib/chef/data_collector.rb headers), no
# gem needed; anything but a 2xx (a redirect is never followed, as
# Chef::HTTP never follows one for a POST) spools the report.
class HttpTransportTest < Minitest::Test
  include TestHelpers

  def setup
    @dir = Dir.mktmpdir
    @logger, @log = Stand.string_logger
  end

  def teardown
    @stub&.close
    FileUtils.remove_entry(@dir) if @dir
  end

  def http_config(**opts)
    Runlens::Config.new({ transport: 'auto', http_url: @stub.url, http_token: 'tok-s3cret', timeout: 2, connect_timeout: 2,
                          spool_dir: File.join(@dir, 'spool') }.merge(opts))
  end

  def test_posts_like_chefs_data_collector
    @stub = StubHTTP.new([204])
    report = Runlens::Report.build(Stand.success_status)
    assert_equal :sent, Runlens::Shipper.new(http_config, logger: @logger).ship(report), @log.string
    method, path, headers, body = @stub.requests.first
    assert_equal ['POST', '/data-collector/v0/'], [method, path]
    assert_equal 'application/json', headers['content-type']
    assert_equal 'tok-s3cret', headers['x-data-collector-token']
    assert_equal 'version=1.0', headers['x-data-collector-auth']
    assert_equal report, JSON.parse(body)
    assert_match(%r{published the run report of web01.example.com to http://127.0.0.1:\d+/data-collector/v0/}, @log.string)
    refute_includes @log.string, 'tok-s3cret'
  end

  def test_spooled_on_503_redirect_and_401_and_sent_first_next_time
    [[503, { 'Retry-After' => '5' }], [302, { 'Location' => 'https://u:pw@elsewhere/' }], [401]].each_with_index do |answer, i|
      @stub = StubHTTP.new(answer)
      result = Runlens::Shipper.new(http_config, logger: @logger).ship(Runlens::Report.build(Stand.success_status(run_id: "r#{i}")))
      assert_equal :spooled, result, answer.inspect
      assert_equal 1, @stub.requests.length, 'no retry, no redirect followed'
      @stub.close
    end
    assert_match(/answered 503/, @log.string)
    assert_match(/answered 302 .*redirected to https:\/\/u:\*\*\*@elsewhere/, @log.string)
    refute_includes @log.string, 'pw@'
    @stub = StubHTTP.new([204])
    assert_equal :sent, Runlens::Shipper.new(http_config, logger: @logger).ship(Runlens::Report.build(Stand.success_status(run_id: 'now')))
    assert_equal %w(r0 r1 r2 now), @stub.requests.map { |r| JSON.parse(r.last)['run_id'] }
  end

  def test_no_token_spools_with_a_reason
    @stub = StubHTTP.new([204])
    assert_equal :spooled, Runlens::Shipper.new(http_config(http_token: nil), logger: @logger).ship(Runlens::Report.build(Stand.success_status))
    assert_match(/no data collector token/, @log.string)
    assert_empty @stub.requests
  end

  def test_transport_choice
    assert_equal 'amqp', Runlens::Config.new.resolved_transport
    assert_equal 'http', Runlens::Config.new(http_url: 'https://x/').resolved_transport
    assert_equal 'amqp', Runlens::Config.new(http_url: 'https://x/', transport: 'amqp').resolved_transport
    assert_equal 'http', Runlens::Config.new(transport: 'HTTP').resolved_transport
  end
end

class ConfigTest < Minitest::Test
  def test_precedence_overrides_run_state_attributes
    node = Stand.web_node(runlens: { 'amqp' => { 'url' => 'amqp://a@h1/%2F', 'password' => 'attr-pw', 'timeout' => '3' } },
                          run_state: { 'runlens' => { 'amqp_password' => 'bag-pw' } })
    cfg = Runlens::Config.from_node(node)
    assert_equal 'bag-pw', cfg.resolved_password
    assert_equal 'amqp://a@h1/%2F', cfg.url
    assert_equal 3.0, cfg.timeout
    assert_equal 'chef_reports', cfg.exchange
    assert_equal 11.0, cfg.deadline, 'deadline = connect_timeout + 2 * timeout'
    cfg = Runlens::Config.from_node(node, 'exchange' => 'other', 'password' => 'arg-pw')
    assert_equal 'other', cfg.exchange
    assert_equal 'arg-pw', cfg.resolved_password
  end

  def test_password_file_and_redaction
    Dir.mktmpdir do |dir|
      path = File.join(dir, 'pw')
      File.write(path, "from-file-pw\n")
      cfg = Runlens::Config.new(url: 'amqp://u:in-url-pw@h/%2F', password_file: path)
      assert_equal 'from-file-pw', cfg.resolved_password
      assert_equal 'amqp://u@h/%2F', cfg.display_url
      line = Runlens.redact('x from-file-pw amqp://u:in-url-pw@h y', cfg.secrets)
      refute_match(/from-file-pw|in-url-pw/, line)
    end
  end
end

class SpoolTest < Minitest::Test
  def test_bounded_oldest_dropped
    Dir.mktmpdir do |dir|
      spool = Runlens::Spool.new(File.join(dir, 'spool'), max: 3)
      dropped = (1..5).map { |i| spool.push(%({"n":#{i}}), id: "run-#{i}") }
      assert_equal [0, 0, 0, 1, 1], dropped
      assert_equal %w(3 4 5), spool.paths.map { |p| JSON.parse(File.read(p))['n'].to_s }
      assert_equal '40700', format('%o', File.stat(spool.dir).mode)
      assert_equal '100600', format('%o', File.stat(spool.paths.first).mode)
      assert_empty Dir.children(spool.dir).grep(/\.tmp\z/)
    end
  end
end

class PublishTest < Minitest::Test
  include TestHelpers

  def setup
    @broker = BrokerFixture.new
    @dir = Dir.mktmpdir
    @logger, @log = Stand.string_logger
  end

  def teardown
    @broker&.close
    FileUtils.remove_entry(@dir) if @dir
  end

  def test_publishes_persistent_json_with_confirm
    report = Runlens::Report.build(Stand.success_status)
    result = Runlens::Shipper.new(config, logger: @logger).ship(report)
    assert_equal :sent, result, @log.string
    msgs = @broker.take(1)
    assert_equal 1, msgs.length
    props, body = msgs.first
    assert_equal 2, props.delivery_mode, 'persistent'
    assert_equal 'application/json', props.content_type
    assert_equal report['run_id'], props.message_id
    assert_equal report, JSON.parse(body)
    refute_includes @log.string, @broker.password == 'guest' ? 'guest:guest' : @broker.password
  end

  def test_unreachable_broker_returns_fast_does_not_raise_and_spools
    spool_dir = File.join(@dir, 'spool')
    report = Runlens::Report.build(Stand.failure_status)
    result, took = timed { Runlens::Shipper.new(unreachable(spool_dir: spool_dir), logger: @logger).ship(report) }
    assert_equal :spooled, result
    assert_operator took, :<, 2, 'connection refused must not wait for the timeouts'
    files = Runlens::Spool.new(spool_dir).paths
    assert_equal 1, files.length
    assert_equal report, JSON.parse(File.read(files.first))
    assert_match(/WARN: runlens: could not publish the run report of web01.example.com to amqp:\/\/runlens@127.0.0.1:1/, @log.string)
    refute_includes @log.string, 'not-guest-s3cret'
  end

  def test_spooled_reports_go_first_then_the_spool_is_empty
    spool_dir = File.join(@dir, 'spool')
    first = Runlens::Report.build(Stand.failure_status(run_id: 'spooled-1'))
    second = Runlens::Report.build(Stand.success_status(run_id: 'spooled-2'))
    assert_equal :spooled, Runlens::Shipper.new(unreachable(spool_dir: spool_dir), logger: @logger).ship(first)
    assert_equal :spooled, Runlens::Shipper.new(unreachable(spool_dir: spool_dir), logger: @logger).ship(second)
    assert_equal 2, Runlens::Spool.new(spool_dir).size

    current = Runlens::Report.build(Stand.success_status(run_id: 'current'))
    result = Runlens::Shipper.new(config(spool_dir: spool_dir), logger: @logger).ship(current)
    assert_equal :sent, result, @log.string
    msgs = @broker.take(3)
    assert_equal %w(spooled-1 spooled-2 current), msgs.map { |props, _| props.message_id }
    assert_equal %w(spooled-1 spooled-2 current), msgs.map { |_, body| JSON.parse(body)['run_id'] }
    assert_equal 0, Runlens::Spool.new(spool_dir).size
    assert_match(/and 2 spooled/, @log.string)
  end

  def test_silent_broker_is_cut_at_the_deadline
    server = TCPServer.new('127.0.0.1', 0)
    accepted = []
    acceptor = Thread.new { loop { accepted << server.accept } }
    cfg = config(url: "amqp://guest@127.0.0.1:#{server.addr[1]}/%2F", timeout: 1, connect_timeout: 1,
                 spool_dir: File.join(@dir, 'spool'))
    result, took = timed { Runlens::Shipper.new(cfg, logger: @logger).ship(Runlens::Report.build(Stand.success_status)) }
    assert_equal :spooled, result
    assert_operator took, :<, cfg.deadline + 1.5, @log.string
  ensure
    acceptor&.kill
    accepted&.each(&:close)
    server&.close
  end

  def test_withheld_confirm_is_cut_and_spooled
    # The proxy stops passing the broker's answers once the report went by:
    # the confirm never comes, as with a quorum queue that lost its majority.
    report = Runlens::Report.build(Stand.success_status(run_id: "withheld-#{SecureRandom.hex(4)}"))
    proxy = FreezingProxy.new(report['run_id'])
    cfg = config(url: "amqp://guest@127.0.0.1:#{proxy.port}/%2F", timeout: 1, connect_timeout: 1,
                 spool_dir: File.join(@dir, 'spool'))
    threads = Thread.list.size
    result, took = timed { Runlens::Shipper.new(cfg, logger: @logger).ship(report) }
    assert proxy.frozen, 'the report went through the proxy'
    assert_equal :spooled, result
    assert_match(/no publisher confirm within 1.0s/, @log.string)
    assert_operator took, :<, cfg.deadline + cfg.timeout + 1.5
    assert_operator Thread.list.size, :<=, threads + proxy.threads, 'no Bunny thread left behind'
  ensure
    proxy&.close
  end

  def test_missing_exchange_without_declare_spools
    cfg = config(exchange: "#{@broker.exchange_name}.missing", declare_exchange: false, timeout: 1,
                 spool_dir: File.join(@dir, 'spool'))
    result, took = timed { Runlens::Shipper.new(cfg, logger: @logger).ship(Runlens::Report.build(Stand.success_status)) }
    assert_equal :spooled, result
    assert_operator took, :<, 3
    assert_match(/NOT_FOUND/, @log.string)
  end

  def test_wrong_password_spools_without_logging_it
    cfg = config(password: 'definitely-wrong-pw', spool_dir: File.join(@dir, 'spool'))
    result = Runlens::Shipper.new(cfg, logger: @logger).ship(Runlens::Report.build(Stand.success_status))
    assert_equal :spooled, result
    refute_includes @log.string, 'definitely-wrong-pw'
    assert_equal 0, @broker.count
  end

  def test_without_spool_dir_the_report_is_dropped_with_a_warning
    result = Runlens::Shipper.new(unreachable, logger: @logger).ship(Runlens::Report.build(Stand.success_status))
    assert_equal :dropped, result
    assert_match(/report dropped \(no spool_dir set\)/, @log.string)
  end
end

# Chef::RunStatus stand-ins for the wrapper's tests.
module RunStatusHelpers
  # A Chef::RunStatus (chef_stand_in.rb) for a Stand::Status: a run context
  # whose action collection has one record per updated resource in the
  # list (so a resource updated by two actions has two records), plus
  # extra records (failed, up-to-date, …); without a run context when the
  # run failed before there was one.
  def chef_run_status(status, with_run_context: true, extra: [])
    rs = Chef::RunStatus.new(status.node, nil)
    rs.start_time = status.start_time
    rs.end_time = status.end_time
    rs.exception = status.exception
    rs.run_id = status.run_id
    return rs unless with_run_context

    records = Array(status.updated_resources).map { |r| record(r, :updated) } + extra
    rc = Chef::RunContext.new
    rc.action_collection = Chef::ActionCollection.new(nil, rc, records)
    rc.resource_collection = Chef::ResourceCollection.new(records.map(&:new_resource).uniq)
    rs.run_context = rc
    rs
  end

  def record(resource, status)
    rec = Chef::ActionCollection::ActionRecord.new(resource, :run, 0)
    rec.status = status
    rec
  end
end

# What a failed chef_gem install raises (the gem_package provider runs gem
# install with shell_out!: mixlib-shellout's error).
module Mixlib
  class ShellOut
    class ShellCommandFailed < RuntimeError; end
  end
end

class ChefHandlerTest < Minitest::Test
  include RunStatusHelpers
  def setup
    @broker = BrokerFixture.new
    @dir = Dir.mktmpdir
    Chef::Log.lines.clear
  end

  def teardown
    @broker&.close
    FileUtils.remove_entry(@dir) if @dir
  end

  def node_for_broker(**amqp)
    Stand.web_node(
      runlens: { 'amqp' => { 'url' => @broker.url, 'password' => 'wrong-attr-pw', 'exchange' => @broker.exchange_name,
                             'timeout' => 2 }.merge(amqp),
                 'spool_dir' => File.join(@dir, 'spool') },
      run_state: { 'runlens' => { 'amqp_password' => @broker.password } }
    )
  end

  def test_report_and_exception_handler_publish
    handler = Runlens::ReportHandler.new
    handler.run_report_safely(chef_run_status(Stand.success_status(node: node_for_broker)))
    handler.run_report_safely(chef_run_status(Stand.failure_status(node: node_for_broker), with_run_context: false))
    msgs = @broker.take(2).map { |_, body| JSON.parse(body) }
    assert_equal 2, msgs.length, Chef::Log.lines.inspect
    ok, failed = msgs
    assert_equal 'success', ok['status']
    assert_equal 3, ok['updated_resources_count']
    assert_equal '18.4.12', ok['chef_version']
    assert_equal %w(db01.example.com role:cache), ok['depends_on']
    assert_equal 'failure', failed['status']
    assert_equal 'Stand::EnclosingDirectoryDoesNotExist', failed['error']['class']
    # No run context (the run failed before one existed): Chef::RunStatus
    # has no resources then (lib/chef/run_status.rb updated_resources is
    # @run_context && …).
    assert_equal 0, failed['updated_resources_count']
    assert_empty Chef::Log.lines.select { |level, _| %i(warn error).include?(level) }
  end

  def test_never_raises_and_spools_when_broker_is_down
    node = node_for_broker('url' => 'amqp://runlens@127.0.0.1:1/%2F')
    handler = Runlens::ReportHandler.new('timeout' => 1)
    t = Time.now
    handler.run_report_safely(chef_run_status(Stand.failure_status(node: node)))
    assert_operator Time.now - t, :<, 2
    assert_empty Chef::Log.lines.select { |level, _| level == :error }, 'nothing escaped the handler'
    warns = Chef::Log.lines.select { |level, _| level == :warn }.map(&:last)
    assert_equal 1, warns.length
    refute_match(/#{Regexp.escape(@broker.password)}|wrong-attr-pw/, warns.first) unless @broker.password == 'guest'
    refute_match(/wrong-attr-pw/, warns.first)
    assert_equal 1, Runlens::Spool.new(File.join(@dir, 'spool')).size
  end

  # One record per action (lib/chef/action_collection.rb): a resource is
  # counted once; a failure with ignore_failure is not a failure; the total
  # counts distinct resources, unprocessed ones included, as runlens counts
  # the data collector's resources[].
  def test_counts_each_resource_once_and_ignores_ignore_failure
    file = Chef::Resource.new('file', '/etc/motd')
    extra = [
      record(Chef::Resource.new('execute', 'optional', ignore_failure: :quiet), :failed),
      record(Chef::Resource.new('package', 'nginx'), :failed),
      record(Chef::Resource.new('template', '/etc/x'), :up_to_date),
      record(Chef::Resource.new('directory', '/srv'), :unprocessed),
      record(file, :up_to_date),
    ]
    status = Stand.failure_status(node: node_for_broker)
    status.updated_resources = [file, Chef::Resource.new('service', 'nginx'), file]
    Runlens::ReportHandler.new.run_report_safely(chef_run_status(status, extra: extra))
    msg = JSON.parse(@broker.take(1).first.last)
    assert_equal %w(file[/etc/motd] service[nginx]), msg['updated_resources']
    assert_equal 2, msg['updated_resources_count']
    assert_equal %w(package[nginx]), msg['failed_resources'], 'execute[optional] had ignore_failure'
    assert_equal 1, msg['failed_resources_count']
    assert_equal 6, msg['total_resources_count']
  end

  # Chef::Handler memoizes its filters (@updated_resources ||= …) and
  # run_report_safely resets only @run_status (lib/chef/handler.rb): a
  # handler registered once in client.rb of a daemonized chef-client would
  # report its first run's resources for ever. This one reads each run's
  # own action collection.
  def test_one_instance_across_runs_reports_each_runs_resources
    handler = Runlens::ReportHandler.new
    first = Stand.success_status(node: node_for_broker, run_id: 'daemon-1')
    first.updated_resources = [Chef::Resource.new('file', '/first')]
    second = Stand.success_status(node: node_for_broker, run_id: 'daemon-2')
    second.updated_resources = [Chef::Resource.new('file', '/second')]
    handler.run_report_safely(chef_run_status(first))
    handler.run_report_safely(chef_run_status(second))
    bodies = @broker.take(2).map { |_, body| JSON.parse(body) }
    assert_equal [%w(file[/first]), %w(file[/second])], bodies.map { |b| b['updated_resources'] }
  end

  # why-run (chef-client --why-run): marked, so runlens counts it as a dry
  # run, never as a run. Chef's own data collector is disabled in why-run
  # mode (lib/chef/data_collector/config_validation.rb should_be_enabled?).
  def test_why_run_is_marked
    Chef::Config[:why_run] = true
    Runlens::ReportHandler.new.run_report_safely(chef_run_status(Stand.success_status(node: node_for_broker)))
    assert_equal true, JSON.parse(@broker.take(1).first.last)['why_run']
  ensure
    Chef::Config[:why_run] = false
  end

  def test_never_raises_on_a_broken_status
    broken = Chef::RunStatus.new(nil, nil)
    def broken.node
      raise 'node exploded'
    end
    # (overrides keep it off the broker's real chef_reports exchange)
    Runlens::ReportHandler.new('url' => 'amqp://runlens@127.0.0.1:1/%2F').run_report_safely(broken)
    assert_empty Chef::Log.lines.select { |level, _| level == :error }
    assert_match(/report of fallback.example.com/, Chef::Log.lines.last.last)
  end
end

# The attributes file and the recipe, evaluated against minimal DSL stand-ins:
# the attribute names the handler reads must be the ones the cookbook sets.
class CookbookTest < Minitest::Test
  include RunStatusHelpers
  AUTOVIV = proc { |h, k| h[k] = Hash.new(&AUTOVIV) }

  def attributes
    tree = Hash.new(&AUTOVIV)
    sandbox = Object.new
    sandbox.define_singleton_method(:default) { tree }
    path = File.join(COOKBOOK, 'attributes', 'default.rb')
    sandbox.instance_eval(File.read(path), path)
    JSON.parse(JSON.generate(tree)) # plain hashes, nil for what is unset
  end

  def test_attribute_defaults_feed_the_handler_config
    attrs = attributes
    node = Stand::Node.new(name: 'n1', attrs: attrs)
    cfg = Runlens::Config.from_node(node)
    assert_equal 'chef_reports', cfg.exchange
    assert_equal 5.0, cfg.timeout
    assert_equal 5.0, cfg.connect_timeout
    assert_equal 15.0, cfg.deadline
    assert cfg.declare_exchange
    assert_equal '/var/chef/cache/runlens_spool', cfg.spool_dir
    assert_equal 100, cfg.spool_max
    assert_nil URI.parse(cfg.url).password, 'no password in the default URL'
    known = %w(url password password_file data_bag data_bag_item data_bag_secret_file exchange declare_exchange
               timeout connect_timeout deadline connection_name tls)
    assert_equal known.sort, attrs['runlens']['amqp'].keys.sort
    assert_equal %w(ca_file cert_file key_file verify_peer).sort, attrs['runlens']['amqp']['tls'].keys.sort
    assert_equal [], attrs['runlens']['depends_on']
    assert_equal true, attrs['runlens']['bunny']['install']
  end

  # Records resources declared by the recipe.
  class Recorder
    attr_reader :kind, :name, :props, :run_actions

    def initialize(kind, name)
      @kind = kind
      @name = name
      @props = {}
      @run_actions = []
    end

    def run_action(action)
      @run_actions << action
      @on_run_action&.call(@kind, action)
      self
    end

    attr_writer :on_run_action

    def method_missing(prop, *args)
      @props[prop] = args.length == 1 ? args.first : args
    end

    def respond_to_missing?(*)
      true
    end
  end

  def run_recipe(attrs, bags = {}, on_run_action: nil)
    node = Stand::Node.new(name: 'n1', attrs: attrs, run_state: {})
    resources = []
    bag_calls = []
    sandbox = Object.new
    sandbox.define_singleton_method(:node) { node }
    %i(chef_gem chef_handler).each do |kind|
      sandbox.define_singleton_method(kind) do |name, &blk|
        r = Recorder.new(kind, name)
        r.on_run_action = on_run_action
        r.instance_eval(&blk)
        resources << r
        r
      end
    end
    sandbox.define_singleton_method(:data_bag_item) do |bag, item, secret = nil|
      bag_calls << [bag, item, secret]
      bags.fetch([bag, item]) { raise "no data bag item #{bag}/#{item}" }
    end
    path = File.join(COOKBOOK, 'recipes', 'default.rb')
    sandbox.instance_eval(File.read(path), path)
    [resources, node, bag_calls]
  end

  # Runs the block with Runlens.bunny_status answering as if bunny were
  # missing (Debian's ruby-bunny is installed here).
  def without_bunny(reason = 'LoadError: cannot load such file -- rbtree')
    sc = Runlens.singleton_class
    orig = Runlens.method(:bunny_status)
    sc.send(:remove_method, :bunny_status)
    sc.send(:define_method, :bunny_status) { [false, reason] }
    yield
  ensure
    sc.send(:remove_method, :bunny_status)
    sc.send(:define_method, :bunny_status, orig)
  end

  def test_recipe_installs_bunny_only_when_missing_and_enables_the_handler
    resources, node, bag_calls = run_recipe(attributes)
    assert_nil resources.find { |r| r.kind == :chef_gem }, 'bunny loads: nothing to install'
    handler = resources.find { |r| r.kind == :chef_handler }
    assert_equal 'Runlens::ReportHandler', handler.name
    assert_equal({ report: true, exception: true }, handler.props[:type])
    assert_equal [:enable], handler.run_actions, 'enabled at compile time'
    assert_empty bag_calls
    assert_empty node.run_state

    without_bunny do
      resources, node, = run_recipe(attributes)
    end
    gem = resources.find { |r| r.kind == :chef_gem }
    assert_equal 'bunny', gem.name
    assert_equal [:install], gem.run_actions, 'installed at compile time'
    assert_equal true, gem.props[:ignore_failure], 'Chef itself must not fail the run on it'
    assert_equal '~> 2.19', gem.props[:version]
    assert_equal 'LoadError: cannot load such file -- rbtree', node.run_state['runlens']['bunny_error']
  end

  # The issue's case: the gem install raises (no compiler for rbtree, no gem
  # access). The recipe, and so the run, goes on; the handler is enabled;
  # at the end of the run it says why it cannot publish over AMQP and
  # spools the report, which a later run sends.
  def test_recipe_survives_a_failing_gem_install_and_the_handler_says_why
    Dir.mktmpdir do |dir|
      attrs = attributes
      attrs['runlens']['spool_dir'] = File.join(dir, 'spool')
      Chef::Log.lines.clear
      resources = node = nil
      raising = proc { |kind, action| if kind == :chef_gem && action == :install
          raise Mixlib::ShellOut::ShellCommandFailed, "Expected process to exit with [0], but received '1'\n---- Begin output of gem install rbtree ----\nERROR: Failed to build gem native extension."
        end }
      without_bunny do
        resources, node, = run_recipe(attrs, {}, on_run_action: raising)
        assert resources.find { |r| r.kind == :chef_handler }&.run_actions&.include?(:enable), 'the handler is enabled anyway'
        assert_match(/Mixlib::ShellOut::ShellCommandFailed: Expected process to exit with \[0\]/, node.run_state['runlens']['bunny_error'])
        assert(Chef::Log.lines.any? { |level, msg| level == :warn && msg.include?('bunny gem could not be installed') })

        status = Stand.success_status(node: node)
        Runlens::ReportHandler.new.run_report_safely(chef_run_status(status))
      end
      warn = Chef::Log.lines.select { |level, _| level == :warn }.map(&:last).last
      assert_match(/the bunny gem cannot be loaded .*installing it failed: Mixlib::ShellOut::ShellCommandFailed/, warn)
      assert_match(/AMQP transport is disabled for this run/, warn)
      assert_empty Chef::Log.lines.select { |level, _| level == :error }, 'nothing escaped into the run'
      assert_equal 1, Runlens::Spool.new(File.join(dir, 'spool')).size, 'the report waits for a later run'
    end
  end

  def test_recipe_skips_bunny_for_the_http_transport
    attrs = attributes
    attrs['runlens']['http']['url'] = 'https://exporter.example.com:9866/data-collector/v0/'
    resources, = without_bunny { run_recipe(attrs) }
    assert_nil resources.find { |r| r.kind == :chef_gem }
    assert resources.find { |r| r.kind == :chef_handler }
  end

  def test_recipe_skips_the_gem_and_reads_the_encrypted_data_bag
    attrs = attributes
    attrs['runlens']['bunny']['install'] = false
    attrs['runlens']['amqp']['data_bag'] = 'secrets'
    attrs['runlens']['amqp']['data_bag_secret_file'] = '/etc/chef/runlens_secret'
    item = { 'id' => 'amqp', 'password' => 'bag-pw', 'url' => 'amqps://runlens@mq/%2F', 'http_token' => 'bag-token' }
    resources, node, bag_calls = without_bunny { run_recipe(attrs, { %w(secrets amqp) => item }) }
    assert_nil resources.find { |r| r.kind == :chef_gem }
    assert_equal [['secrets', 'amqp', 'secret-in-/etc/chef/runlens_secret']], bag_calls
    assert_equal({ 'amqp_password' => 'bag-pw', 'amqp_url' => 'amqps://runlens@mq/%2F', 'http_token' => 'bag-token' },
                 node.run_state['runlens'])
    cfg = Runlens::Config.from_node(node)
    assert_equal 'bag-pw', cfg.resolved_password
    assert_equal 'amqps://runlens@mq/%2F', cfg.url
    assert_equal 'bag-token', cfg.resolved_token
  end

  def test_recipe_survives_a_missing_data_bag
    attrs = attributes
    attrs['runlens']['amqp']['data_bag'] = 'nope'
    Chef::Log.lines.clear
    resources, = run_recipe(attrs)
    assert resources.find { |r| r.kind == :chef_handler }
    assert_match(%r{cannot load data bag item nope/amqp}, Chef::Log.lines.last.last)
  end
end
