# frozen_string_literal: true

# Tests of the runlens Chef handler without Chef: the plain classes against
# the real RabbitMQ (127.0.0.1:5672, guest/guest, or RUNLENS_TEST_AMQP_URL),
# each test on its own exchange and queue, deleted afterwards; then the
# Chef::Handler wrapper, the attributes file and the recipe against minimal
# stand-ins for the Chef classes they touch.
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

# The Chef API the wrapper, the attributes file and the recipe use, and
# nothing more. Chef::Handler#run_report_safely is Chef's own (rescue
# everything, log it as an error), so an exception escaping the handler shows
# up as an error line.
module Chef
  VERSION = '18.4.12'
  Config = { node_name: 'fallback.example.com', file_cache_path: '/var/chef/cache' }.freeze

  module Log
    @lines = []
    class << self
      attr_reader :lines

      %i(debug info warn error).each do |level|
        define_method(level) { |msg| @lines << [level, msg.to_s] }
      end
    end
  end

  class EncryptedDataBagItem
    def self.load_secret(path)
      "secret-in-#{path}"
    end
  end

  class Handler
    attr_reader :run_status

    %i(node start_time end_time elapsed_time exception backtrace).each do |name|
      define_method(name) { @run_status.public_send(name) }
    end

    # Chef >= 15: from the action collection, one entry per updating action.
    def updated_resources
      @run_status.run_context.action_collection.updated
    end

    def run_report_safely(run_status)
      @run_status = run_status
      report
    rescue Exception => e # rubocop:disable Lint/RescueException
      Chef::Log.error("Report handler #{self.class.name} raised #{e.inspect}")
    ensure
      @run_status = nil
    end
  end
end

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

class ChefHandlerTest < Minitest::Test
  def setup
    @broker = BrokerFixture.new
    @dir = Dir.mktmpdir
    Chef::Log.lines.clear
  end

  def teardown
    @broker&.close
    FileUtils.remove_entry(@dir) if @dir
  end

  # What Chef::RunStatus looks like to the handler: the Status fields plus a
  # run context whose action collection lists updated resources.
  def chef_run_status(status, with_run_context: true)
    collection = Struct.new(:updated).new(status.updated_resources)
    run_context = with_run_context ? Struct.new(:action_collection).new(collection) : nil
    rs = Struct.new(*status.members, :run_context, keyword_init: true)
    rs.new(**status.to_h, run_context: run_context)
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
    assert_equal 1, failed['updated_resources_count'], 'falls back to run_status.updated_resources'
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

  def test_never_raises_on_a_broken_status
    broken = Object.new
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
      self
    end

    def method_missing(prop, *args)
      @props[prop] = args.length == 1 ? args.first : args
    end

    def respond_to_missing?(*)
      true
    end
  end

  def run_recipe(attrs, bags = {})
    node = Stand::Node.new(name: 'n1', attrs: attrs, run_state: {})
    resources = []
    bag_calls = []
    sandbox = Object.new
    sandbox.define_singleton_method(:node) { node }
    %i(chef_gem chef_handler).each do |kind|
      sandbox.define_singleton_method(kind) do |name, &blk|
        r = Recorder.new(kind, name)
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

  def test_recipe_installs_bunny_and_enables_the_handler_for_reports_and_exceptions
    resources, node, bag_calls = run_recipe(attributes)
    gem = resources.find { |r| r.kind == :chef_gem }
    assert_equal 'bunny', gem.name
    assert_equal true, gem.props[:compile_time]
    assert_equal '~> 2.19', gem.props[:version]
    handler = resources.find { |r| r.kind == :chef_handler }
    assert_equal 'Runlens::ReportHandler', handler.name
    assert_equal({ report: true, exception: true }, handler.props[:type])
    assert_equal [:enable], handler.run_actions, 'enabled at compile time'
    assert_empty bag_calls
    assert_empty node.run_state
  end

  def test_recipe_skips_the_gem_and_reads_the_encrypted_data_bag
    attrs = attributes
    attrs['runlens']['bunny']['install'] = false
    attrs['runlens']['amqp']['data_bag'] = 'secrets'
    attrs['runlens']['amqp']['data_bag_secret_file'] = '/etc/chef/runlens_secret'
    item = { 'id' => 'amqp', 'password' => 'bag-pw', 'url' => 'amqps://runlens@mq/%2F' }
    resources, node, bag_calls = run_recipe(attrs, { %w(secrets amqp) => item })
    assert_nil resources.find { |r| r.kind == :chef_gem }
    assert_equal [['secrets', 'amqp', 'secret-in-/etc/chef/runlens_secret']], bag_calls
    assert_equal({ 'amqp_password' => 'bag-pw', 'amqp_url' => 'amqps://runlens@mq/%2F' }, node.run_state['runlens'])
    cfg = Runlens::Config.from_node(node)
    assert_equal 'bag-pw', cfg.resolved_password
    assert_equal 'amqps://runlens@mq/%2F', cfg.url
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
