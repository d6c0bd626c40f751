# frozen_string_literal: true

#
# runlens report handler: the plain-Ruby core.
#
# Nothing in this file needs Chef. Runlens::ReportHandler (runlens_handler.rb)
# is a thin Chef::Handler wrapper around it, so the report format, the
# publishing (AMQP with Bunny, or HTTP to the exporter's data collector
# endpoint with Net::HTTP) and the spool are tested with a plain `ruby`.
#
#   report = Runlens::Report.build(run_status_like)   # a Hash; Report.generate(report) is the JSON
#   Runlens::Shipper.new(Runlens::Config.new(url: ..., password: ...), logger: logger).ship(report)
#
# run_status_like responds to node, start_time, end_time, elapsed_time,
# updated_resources, exception, backtrace and run_id, like Chef::RunStatus,
# and optionally failed_resources and total_resources (a count).
#
require 'fileutils'
require 'json'
require 'logger'
require 'net/http'
require 'openssl'
require 'securerandom'
require 'time'
require 'timeout'
require 'uri'

module Runlens
  VERSION = '1.1.0' unless const_defined?(:VERSION)
  PRODUCER = "runlens_handler/#{VERSION}" unless const_defined?(:PRODUCER)

  # Raised by Publisher when the broker did not take a report.
  class PublishError < StandardError; end

  # Errors the handler rescues: everything a broken network, a missing gem
  # (LoadError is a ScriptError) or a deadline (Timeout::Error) can raise.
  RESCUABLE = [StandardError, ScriptError, ::Timeout::Error].freeze unless const_defined?(:RESCUABLE)

  # Replaces secrets in text meant for a log line: each given secret, and the
  # password part of any URL (scheme://user:password@host).
  def self.redact(text, *secrets)
    s = text.to_s.dup
    s = s.gsub(%r{(\w+://[^/:@\s]*):[^@/\s]*@}) { "#{Regexp.last_match(1)}:***@" }
    secrets.flatten.compact.map(&:to_s).reject(&:empty?).sort_by { |x| -x.length }.each do |secret|
      s = s.gsub(secret, '***')
    end
    s
  end

  # The secrets scrubber every runlens producer applies to error texts before
  # they travel (the Salt returner's _scrub and the exporter's
  # datacollector.Scrub are the same rules; producers/testdata/
  # scrub-vectors.json holds the cases all three are tested against): the
  # password of a URL's userinfo, and the value of password=, token:,
  # api_key= and the like.
  URL_USERINFO = %r{([A-Za-z][A-Za-z0-9+.-]*://)([^/\s:@]*):([^/\s@]*)@}.freeze unless const_defined?(:URL_USERINFO)
  SECRET_VALUE = /(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)(["']?\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s"',;&]+)/i.freeze unless const_defined?(:SECRET_VALUE)

  def self.scrub(text)
    s = text.to_s
    return s unless s.include?('=') || s.include?(':')

    s.gsub(URL_USERINFO) { "#{Regexp.last_match(1)}#{Regexp.last_match(2)}:***@" }
     .gsub(SECRET_VALUE) { "#{Regexp.last_match(1)}#{Regexp.last_match(2)}***" }
  end

  # Whether Bunny can be loaded, and why not: it needs sorted_set, which
  # needs rbtree, a C extension, so it is missing on nodes without a
  # compiler or gem access. Returns [true, nil] or [false, reason].
  def self.bunny_status
    require 'bunny'
    [true, nil]
  rescue LoadError => e
    [false, "#{e.class}: #{e.message.lines.first.to_s.strip}"]
  end

  # Reads path from a Chef node, a Hash (string or symbol keys) or a Struct,
  # returning nil for anything missing instead of raising.
  def self.dig(obj, *path)
    path.each do |key|
      return nil if obj.nil?

      obj = index(obj, key)
    end
    obj
  end

  def self.index(obj, key)
    return nil if obj.is_a?(String) || obj.is_a?(Numeric) || obj.is_a?(Array) || !obj.respond_to?(:[])

    value = begin
      obj[key.to_s]
    rescue StandardError
      nil
    end
    if value.nil? && obj.is_a?(Hash)
      value = obj[key.to_sym]
    elsif value.nil? && obj.is_a?(Struct) && obj.members.include?(key.to_sym)
      value = obj[key.to_sym]
    end
    value
  end

  # Builds the chef_handler JSON (the `chef_handler` format of runlens'
  # brief) from a Chef::RunStatus-like object.
  module Report
    # A resource's to_s can hold a whole inline script; the exporter keeps at
    # most 512 bytes of a name anyway.
    MAX_RESOURCE_CHARS = 1024
    # An error travels to the broker, the history stream and Grafana: its
    # message is capped (runlens keeps 1 KiB of it anyway) and the backtrace
    # cut to its head, both scrubbed of obvious secrets (Runlens.scrub).
    MAX_MESSAGE_CHARS = 1024
    MAX_BACKTRACE_LINES = 10
    MAX_BACKTRACE_LINE_CHARS = 300
    MAX_LIST_ITEMS = 256

    module_function

    # status: a Chef::RunStatus-like object (see the file comment).
    # chef_version: Chef::VERSION when known (else read from the node's Ohai data).
    # fallback_node_name: used when status.node is nil (the run failed before
    # the node was loaded).
    # why_run: Chef::Config[:why_run]; the report is marked, and runlens
    # counts it as a dry run, never as a run.
    # now: the report generation time.
    def build(status, chef_version: nil, fallback_node_name: nil, why_run: false, now: Time.now)
      node = call(status, :node)
      exception = call(status, :exception)
      start_time = call(status, :start_time)
      end_time = call(status, :end_time) || now
      elapsed = call(status, :elapsed_time)
      elapsed = end_time - start_time if elapsed.nil? && start_time && end_time
      updated = resource_strings(call(status, :updated_resources))
      failed = resource_strings(call(status, :failed_resources))
      total = call(status, :total_resources)

      report = {
        'node_name' => node_value(node, :name) || fallback_node_name,
        'fqdn' => Runlens.dig(node, 'fqdn'),
        'ip_address' => Runlens.dig(node, 'ipaddress'),
        'environment' => node_value(node, :chef_environment),
        'status' => exception.nil? ? 'success' : 'failure',
        'run_start_time' => iso8601(start_time),
        'run_end_time' => iso8601(end_time),
        'run_elapsed_time' => elapsed&.to_f&.round(3),
        'updated_resources_count' => updated.length,
        'updated_resources' => updated,
        'failed_resources_count' => failed.length,
        'failed_resources' => failed,
        'total_resources_count' => total.is_a?(Integer) ? [total, updated.length, failed.length].max : nil,
        'why_run' => why_run ? true : nil,
        'report_generated_at' => iso8601(now),
        'run_id' => call(status, :run_id)&.to_s,
        'roles' => string_list(Runlens.dig(node, 'roles')),
        'run_list' => string_list(node_value(node, :run_list)),
        'policy_name' => node_value(node, :policy_name),
        'policy_group' => node_value(node, :policy_group),
        'chef_version' => chef_version || Runlens.dig(node, 'chef_packages', 'chef', 'version'),
        'platform' => Runlens.dig(node, 'platform'),
        'platform_version' => Runlens.dig(node, 'platform_version'),
        'depends_on' => string_list(Runlens.dig(node, 'runlens', 'depends_on')),
        'producer' => PRODUCER,
      }
      report['error'] = error_object(exception, call(status, :backtrace)) if exception
      # Optional fields are left out rather than sent empty; the updated and
      # failed lists always go, since the decoder counts from them.
      keep = %w(updated_resources failed_resources)
      scrub(report.reject { |k, v| !keep.include?(k) && (v.nil? || v == '' || v == []) })
    end

    # The message body: compact JSON, valid UTF-8 whatever the run produced.
    def generate(report)
      JSON.generate(scrub(report))
    end

    def error_object(exception, backtrace)
      lines = Array(backtrace || (exception.respond_to?(:backtrace) ? exception.backtrace : nil))
      message = exception.respond_to?(:message) ? exception.message : exception
      {
        'class' => exception.class.name,
        'message' => cut(Runlens.scrub(message), MAX_MESSAGE_CHARS),
        'backtrace' => lines.first(MAX_BACKTRACE_LINES).map { |l| cut(Runlens.scrub(l), MAX_BACKTRACE_LINE_CHARS) },
      }
    end

    # "type[name]" for each resource, each resource once: a resource is its
    # type and name, as runlens counts it in every format (Chef's action
    # collection has one record per action and notification, and two
    # declarations of service[nginx] are one resource).
    def resource_strings(resources)
      seen = {}
      Array(resources).each_with_object([]) do |r, out|
        s = r.to_s
        s = "#{cut(s, MAX_RESOURCE_CHARS - 1)}]" if s.length > MAX_RESOURCE_CHARS
        next if seen.key?(s)

        seen[s] = true
        out << s
      end
    end

    def node_value(node, method)
      return nil if node.nil?

      if !node.is_a?(Hash) && node.respond_to?(method)
        begin
          return node.public_send(method)
        rescue StandardError
          return nil
        end
      end
      Runlens.dig(node, method.to_s)
    end

    def string_list(value)
      return nil if value.nil?

      items = value.respond_to?(:to_a) && !value.is_a?(String) && !value.is_a?(Hash) ? value.to_a : [value]
      items.map(&:to_s).reject(&:empty?).first(MAX_LIST_ITEMS)
    end

    def call(obj, method)
      return nil if obj.nil?

      if obj.respond_to?(method)
        obj.public_send(method)
      else
        Runlens.dig(obj, method)
      end
    rescue StandardError
      nil
    end

    def iso8601(time)
      return nil if time.nil?

      time = Time.parse(time) if time.is_a?(String)
      time.getutc.iso8601(3)
    end

    def cut(text, max)
      s = text.to_s
      s.length > max ? s[0, max] : s
    end

    # Makes every string valid UTF-8 so JSON.generate cannot raise.
    def scrub(value)
      case value
      when Hash then value.each_with_object({}) { |(k, v), h| h[k.to_s] = scrub(v) }
      when Array then value.map { |v| scrub(v) }
      when String
        s = value.encoding == Encoding::UTF_8 ? value : value.dup.force_encoding(Encoding::UTF_8)
        s.valid_encoding? ? s : s.scrub('?')
      when Symbol then value.to_s
      else value
      end
    end
  end

  # Settings of the handler. Keys match node['runlens']['amqp'], with
  # node['runlens']['http'] as http_* and node['runlens']['transport'],
  # ['spool_dir'] and ['spool_max'].
  class Config
    DEFAULTS = {
      # 'amqp' (Bunny), 'http' (Net::HTTP to the exporter's data collector
      # endpoint: no gem needed) or 'auto': http when http_url is set.
      transport: 'auto',
      http_url: nil,        # https://exporter:9866/data-collector/v0/
      http_token: nil,      # the exporter's --ingest.token-file token
      http_token_file: nil,
      http_ca_file: nil,    # CA that signed the exporter's certificate; nil: the system's
      http_verify_peer: true,
      url: 'amqp://guest@127.0.0.1:5672/%2F',
      password: nil,
      password_file: nil,
      exchange: 'chef_reports',
      declare_exchange: true,
      timeout: 5,          # seconds: publisher confirm, socket reads/writes
      connect_timeout: 5,  # seconds: TCP connect
      deadline: nil,       # seconds for a whole shipment; default connect_timeout + 2 * timeout
      spool_dir: nil,      # nil: no spool, a failed report is dropped (after a warning)
      spool_max: 100,      # spooled reports kept at most; the oldest are dropped
      connection_name: 'runlens-chef-handler',
      tls_ca_file: nil,
      tls_cert_file: nil,
      tls_key_file: nil,
      verify_peer: true,
    }.freeze

    attr_reader(*DEFAULTS.keys)

    def initialize(opts = {})
      opts = (opts || {}).each_with_object({}) { |(k, v), h| h[k.to_sym] = v unless v.nil? }
      DEFAULTS.each { |key, default| instance_variable_set("@#{key}", opts.fetch(key, default)) }
      @timeout = positive(@timeout, 5)
      @connect_timeout = positive(@connect_timeout, 5)
      @deadline = positive(@deadline, @connect_timeout + (2 * @timeout))
      @spool_max = [@spool_max.to_i, 1].max
      @declare_exchange = truthy(@declare_exchange)
      @verify_peer = truthy(@verify_peer)
      @http_verify_peer = truthy(@http_verify_peer)
      @spool_dir = nil if @spool_dir.to_s.strip.empty?
    end

    # 'http' or 'amqp'.
    def resolved_transport
      case @transport.to_s.strip.downcase
      when 'http' then 'http'
      when 'amqp' then 'amqp'
      else @http_url.to_s.strip.empty? ? 'amqp' : 'http'
      end
    end

    # The data collector token: http_token, else the first line of
    # http_token_file.
    def resolved_token
      return @http_token.to_s unless @http_token.nil? || @http_token.to_s.empty?
      return File.read(@http_token_file).lines.first.to_s.chomp if @http_token_file && !@http_token_file.to_s.empty?

      nil
    end

    # Reads the settings from a Chef node (or anything Runlens.dig reads):
    # overrides (the chef_handler arguments) win over node.run_state['runlens']
    # (what the recipe loaded from an encrypted data bag), which wins over the
    # node attributes node['runlens']['amqp'].
    def self.from_node(node, overrides = {}, run_state = nil)
      amqp = Runlens.dig(node, 'runlens', 'amqp') || {}
      tls = Runlens.dig(amqp, 'tls') || {}
      state = run_state || (node.respond_to?(:run_state) ? node.run_state : nil) || {}
      secret = Runlens.dig(state, 'runlens') || {}
      opts = {}
      %w(url password password_file exchange declare_exchange timeout connect_timeout deadline connection_name).each do |k|
        opts[k.to_sym] = Runlens.dig(amqp, k)
      end
      opts[:tls_ca_file] = Runlens.dig(tls, 'ca_file')
      opts[:tls_cert_file] = Runlens.dig(tls, 'cert_file')
      opts[:tls_key_file] = Runlens.dig(tls, 'key_file')
      opts[:verify_peer] = Runlens.dig(tls, 'verify_peer')
      opts[:spool_dir] = Runlens.dig(node, 'runlens', 'spool_dir')
      opts[:spool_max] = Runlens.dig(node, 'runlens', 'spool_max')
      opts[:transport] = Runlens.dig(node, 'runlens', 'transport')
      http = Runlens.dig(node, 'runlens', 'http') || {}
      %w(url token token_file ca_file verify_peer).each { |k| opts[:"http_#{k}"] = Runlens.dig(http, k) }
      opts[:url] = Runlens.dig(secret, 'amqp_url') || opts[:url]
      opts[:password] = Runlens.dig(secret, 'amqp_password') || opts[:password]
      opts[:http_token] = Runlens.dig(secret, 'http_token') || opts[:http_token]
      (overrides || {}).each { |k, v| opts[k.to_sym] = v unless v.nil? }
      new(opts)
    end

    # The password: the password setting, else the first line of
    # password_file, else the one in the URL (nil: Bunny's default).
    def resolved_password
      return @password.to_s unless @password.nil? || @password.to_s.empty?
      return File.read(@password_file).lines.first.to_s.chomp if @password_file && !@password_file.to_s.empty?

      nil
    end

    # Secrets to keep out of log lines.
    def secrets
      pw = begin
        resolved_password
      rescue StandardError
        nil
      end
      url_pw = begin
        u = URI.parse(@url.to_s)
        u.password && URI.decode_www_form_component(u.password)
      rescue StandardError
        nil
      end
      token = begin
        resolved_token
      rescue StandardError
        nil
      end
      [pw, url_pw, token].compact
    end

    # Where reports go, without any password, for log lines.
    def display_url
      raw = resolved_transport == 'http' ? @http_url : @url
      u = URI.parse(raw.to_s)
      u.password = nil if u.password
      u.to_s
    rescue StandardError
      Runlens.redact(raw.to_s)
    end

    private

    def positive(value, default)
      f = Float(value)
      f.positive? ? f : default
    rescue ArgumentError, TypeError
      default
    end

    def truthy(value)
      !(value.nil? || value == false || %w(false no off 0).include?(value.to_s.strip.downcase))
    end
  end

  # A bounded directory of reports that could not be sent, oldest first.
  class Spool
    attr_reader :dir, :max

    def initialize(dir, max: 100)
      @dir = dir.to_s
      @max = [max.to_i, 1].max
    end

    # Writes body atomically (tmp file + rename), readable by root only (a
    # report holds error messages), then drops the oldest files beyond max.
    # Returns the number of files dropped.
    def push(body, id: nil)
      FileUtils.mkdir_p(@dir, mode: 0o700)
      stamp = format('%020d', Process.clock_gettime(Process::CLOCK_REALTIME, :nanosecond))
      tag = id.to_s.gsub(/[^A-Za-z0-9_.-]/, '')[0, 64]
      tag = SecureRandom.hex(4) if tag.empty?
      name = "#{stamp}-#{tag}.json"
      tmp = File.join(@dir, ".#{name}.tmp")
      File.open(tmp, File::WRONLY | File::CREAT | File::TRUNC, 0o600) { |f| f.write(body) }
      File.rename(tmp, File.join(@dir, name))
      prune
    end

    # Spooled report files, oldest first.
    def paths
      return [] unless File.directory?(@dir)

      Dir.children(@dir).select { |n| n.end_with?('.json') && !n.start_with?('.') }.sort.map { |n| File.join(@dir, n) }
    end

    def size
      paths.length
    end

    def delete(path)
      File.unlink(path)
    rescue Errno::ENOENT
      nil
    end

    private

    def prune
      # A run killed between write and rename leaves a temporary file behind.
      Dir.glob(File.join(@dir, '.*.tmp')).each do |tmp|
        File.unlink(tmp) if File.mtime(tmp) < Time.now - 3600
      rescue SystemCallError
        nil
      end
      all = paths
      extra = all.length - @max
      return 0 unless extra.positive?

      all.first(extra).each { |p| delete(p) }
      extra
    end
  end

  # Publishes reports to a fanout exchange with Bunny: persistent messages,
  # publisher confirms, short timeouts, no automatic recovery, and no
  # asynchronous exceptions raised into the caller's thread.
  class Publisher
    # Bunny's session_error_handler. Bunny calls #raise on it (default:
    # Thread.current) both from the calling thread, where it must raise at
    # once (the transport relies on it while connecting), and from its reader
    # thread, where Thread#raise would throw an exception into the Chef run
    # out of nowhere, possibly after the handler returned. This one raises in
    # the thread that opened the connection and only records the rest.
    class ErrorSink
      attr_reader :error

      def initialize(owner = Thread.current)
        @owner = owner
        @error = nil
      end

      def raise(err, *rest)
        @error ||= err.is_a?(Exception) ? err : RuntimeError.new(err.to_s)
        Kernel.raise(err, *rest) if Thread.current == @owner
      end
    end

    def initialize(config)
      @config = config
      @conn = nil
      @channel = nil
      @exchange = nil
    end

    def open
      require 'bunny'
      @sink = ErrorSink.new
      opts = {
        password: @config.resolved_password,
        connection_timeout: @config.connect_timeout,
        read_timeout: @config.timeout,
        write_timeout: @config.timeout,
        continuation_timeout: (@config.timeout * 1000).to_i,
        automatically_recover: false,
        recover_from_connection_close: false,
        threaded: true,
        logger: ::Logger.new(nil),
        session_error_handler: @sink,
        connection_name: @config.connection_name,
      }.compact
      opts.merge!(tls_options) if @config.url.to_s.start_with?('amqps:')
      # By the AMQP URI spec, which Bunny follows, amqp://host/ names the
      # empty vhost (and fails with "vhost  not found"); Go's amqp091 and
      # pika read it as "/", and so does this handler.
      opts[:vhost] = '/' if URI.parse(@config.url.to_s).path == '/'
      @conn = Bunny.new(@config.url, opts)
      @conn.start
      @channel = @conn.create_channel
      @channel.confirm_select
      @exchange = @channel.exchange(@config.exchange, type: :fanout, durable: true,
                                                      no_declare: !@config.declare_exchange)
      self
    end

    # Publishes one message and waits for the broker's confirm. Raises
    # PublishError (or a Bunny / Timeout error) unless the broker acked it.
    def publish(body, message_id: nil)
      raise PublishError, 'publisher is not open' unless @exchange

      props = {
        routing_key: '',
        persistent: true,
        content_type: 'application/json',
        app_id: PRODUCER,
        type: 'chef_handler',
        timestamp: Time.now.to_i,
      }
      props[:message_id] = message_id.to_s if message_id && !message_id.to_s.empty?
      @exchange.publish(body, props)
      acked = begin
        @channel.wait_for_confirms
      rescue ::Timeout::Error
        # Bunny 2.19's wait_for_confirms has no timeout argument: it polls
        # with the connection's continuation_timeout and raises a bare
        # Timeout::Error. A channel the broker closed (404 on a missing
        # exchange) does not wake it either, so say why if we know.
        raise PublishError, "no publisher confirm within #{@config.timeout}s#{channel_reason}"
      end
      raise PublishError, "connection failed: #{@sink.error.message}" if @sink.error
      raise PublishError, 'the broker nacked the report' unless acked

      true
    end

    def close
      conn = @conn
      @conn = @channel = @exchange = nil
      return unless conn

      begin
        ::Timeout.timeout(@config.timeout + 1) { conn.close }
      rescue *RESCUABLE
        begin
          conn.transport&.close
        rescue StandardError
          nil
        end
      end
    end

    private

    def channel_reason
      return '' unless @channel&.closed?

      @channel.send(:raise_if_no_longer_open!)
      ': channel closed'
    rescue StandardError => e
      ": #{e.message}"
    end

    def tls_options
      {
        tls: true,
        verify_peer: @config.verify_peer,
        tls_ca_certificates: @config.tls_ca_file ? [@config.tls_ca_file] : nil,
        tls_cert: @config.tls_cert_file,
        tls_key: @config.tls_key_file,
        tls_silence_warnings: @config.tls_cert_file.nil?,
      }.compact
    end
  end

  # Publishes reports over HTTP to the runlens exporter's data collector
  # endpoint (--ingest.token-file), with nothing but Ruby's standard
  # library: no gem to install, nothing to compile. It talks to the endpoint
  # the way Chef's data collector does (lib/chef/data_collector.rb: a POST
  # of the JSON to the configured URL with x-data-collector-token and
  # x-data-collector-auth), and like Chef::HTTP it never follows a redirect
  # of a POST. The exporter answers 2xx only once the broker confirmed the
  # report or it is fsynced in the exporter's spool, so a 2xx is as good as
  # a publisher confirm; anything else raises PublishError and the report
  # goes to the local spool, sent again next run.
  class HttpPublisher
    def initialize(config)
      @config = config
      @http = nil
    end

    def open
      @uri = URI.parse(@config.http_url.to_s)
      raise PublishError, "http_url #{@config.display_url} is not an http(s) URL" unless %w(http https).include?(@uri.scheme)

      @token = @config.resolved_token
      raise PublishError, 'no data collector token (http_token, http_token_file or the data bag)' if @token.to_s.empty?

      @http = Net::HTTP.new(@uri.host, @uri.port)
      @http.open_timeout = @config.connect_timeout
      @http.read_timeout = @config.timeout
      @http.write_timeout = @config.timeout if @http.respond_to?(:write_timeout=)
      if @uri.scheme == 'https'
        @http.use_ssl = true
        @http.verify_mode = @config.http_verify_peer ? OpenSSL::SSL::VERIFY_PEER : OpenSSL::SSL::VERIFY_NONE
        @http.ca_file = @config.http_ca_file if @config.http_ca_file
      end
      @http.start
      self
    end

    def publish(body, message_id: nil)
      raise PublishError, 'publisher is not open' unless @http

      req = Net::HTTP::Post.new(@uri.request_uri)
      req['Content-Type'] = 'application/json'
      req['Accept'] = 'application/json'
      req['x-data-collector-token'] = @token
      req['x-data-collector-auth'] = 'version=1.0'
      req['X-Runlens-Message-Id'] = message_id.to_s if message_id
      req['User-Agent'] = PRODUCER
      req.body = body
      res = @http.request(req)
      return true if res.is_a?(Net::HTTPSuccess)

      where = res.is_a?(Net::HTTPRedirection) ? " (redirected to #{Runlens.redact(res['location'])}; fix http_url)" : ''
      raise PublishError, "the exporter answered #{res.code} #{res.message}#{where}"
    end

    def close
      http = @http
      @http = nil
      http&.finish if http&.started?
    rescue StandardError
      nil
    end
  end

  # Sends a report: first whatever the spool holds (oldest first, each file
  # deleted only after its confirm), then the report itself. When anything
  # fails it warns (without secrets), spools the report and returns; it never
  # raises.
  class Shipper
    attr_reader :spool

    def initialize(config, logger: nil)
      @config = config
      @logger = logger || ::Logger.new($stderr)
      @spool = config.spool_dir ? Spool.new(config.spool_dir, max: config.spool_max) : nil
    end

    # Returns :sent, :spooled or :dropped. disabled: why publishing cannot
    # work this run (the bunny gem missing); the report then goes straight
    # to the spool.
    def ship(report, disabled: nil)
      body = report.is_a?(String) ? report : Report.generate(report)
      id = report.is_a?(Hash) ? report['run_id'] : nil
      node = report.is_a?(Hash) ? report['node_name'] : nil
      return keep(body, id, node, PublishError.new(disabled), 0) if disabled

      replayed = 0
      publisher = @config.resolved_transport == 'http' ? HttpPublisher.new(@config) : Publisher.new(@config)
      begin
        ::Timeout.timeout(@config.deadline) do
          publisher.open
          replayed = replay(publisher)
          publisher.publish(body, message_id: id)
        end
        log(:info, "runlens: published the run report of #{node} to #{where}" \
                   "#{replayed.positive? ? " (and #{replayed} spooled)" : ''}")
        :sent
      rescue *RESCUABLE => e
        keep(body, id, node, e, replayed)
      ensure
        publisher.close
      end
    rescue *RESCUABLE => e
      log(:warn, "runlens: could not build or send the run report: #{e.class}: #{e.message}")
      :dropped
    end

    private

    def replay(publisher)
      return 0 unless @spool

      sent = 0
      @spool.paths.each do |path|
        body = begin
          File.binread(path)
        rescue Errno::ENOENT
          next
        end
        id = begin
          JSON.parse(body)['run_id']
        rescue StandardError
          nil
        end
        publisher.publish(body, message_id: id)
        @spool.delete(path)
        sent += 1
      end
      sent
    end

    def keep(body, id, node, error, replayed)
      reason = "#{error.class}: #{error.message}"
      reason = "#{error.class}: no answer within the #{@config.deadline}s deadline" if error.instance_of?(::Timeout::Error)
      base = "runlens: could not publish the run report of #{node} to #{where}: #{reason}"
      base += " (#{replayed} spooled reports sent first)" if replayed.positive?
      unless @spool
        log(:warn, "#{base}; report dropped (no spool_dir set)")
        return :dropped
      end
      begin
        dropped = @spool.push(body, id: id)
        note = dropped.positive? ? ", #{dropped} oldest dropped" : ''
        log(:warn, "#{base}; spooled in #{@spool.dir} (#{@spool.size} waiting#{note})")
        :spooled
      rescue *RESCUABLE => e
        log(:warn, "#{base}; could not spool it either: #{e.class}: #{e.message}")
        :dropped
      end
    end

    def where
      return @config.display_url if @config.resolved_transport == 'http'

      "#{@config.display_url} exchange #{@config.exchange}"
    end

    def log(level, message)
      @logger.public_send(level, Runlens.redact(message, @config.secrets))
    rescue StandardError
      nil
    end
  end
end
