# frozen_string_literal: true

# Stand-ins shared by the minitest suite and the end-to-end script: a Chef
# node and a Chef::RunStatus built from plain Structs, so the handler classes
# run with Debian's ruby and ruby-bunny and no Chef installed.
require 'logger'
require 'stringio'

COOKBOOK = File.expand_path('../cookbooks/runlens_handler', __dir__) unless defined?(COOKBOOK)
require File.join(COOKBOOK, 'libraries', 'runlens')

module Stand
  # A Chef resource: to_s is "type[name]", like Chef::Resource#to_s.
  Resource = Struct.new(:type, :name) do
    def to_s
      "#{type}[#{name}]"
    end
  end

  # A run-list item prints as "role[web]" / "recipe[nginx::default]".
  RunListItem = Struct.new(:type, :name) do
    def to_s
      "#{type}[#{name}]"
    end
  end

  # A Chef::Node: methods for name, chef_environment, run_list, policy_*,
  # run_state; [] for attributes (automatic + normal + default merged).
  class Node
    attr_reader :name, :chef_environment, :run_list, :policy_name, :policy_group, :run_state

    def initialize(name:, environment: '_default', run_list: [], policy_name: nil, policy_group: nil,
                   attrs: {}, run_state: {})
      @name = name
      @chef_environment = environment
      @run_list = run_list
      @policy_name = policy_name
      @policy_group = policy_group
      @attrs = attrs
      @run_state = run_state
    end

    def [](key)
      @attrs[key.to_s]
    end
  end

  # Stands in for Chef::Exceptions::EnclosingDirectoryDoesNotExist.
  class EnclosingDirectoryDoesNotExist < RuntimeError; end

  # A Chef::RunStatus.
  Status = Struct.new(:node, :start_time, :end_time, :elapsed_time, :updated_resources, :exception, :backtrace,
                      :run_id, keyword_init: true)

  module_function

  def web_node(name: 'web01.example.com', runlens: {}, run_state: {})
    Node.new(
      name: name,
      environment: 'production',
      run_list: [RunListItem.new('role', 'base'), RunListItem.new('role', 'web'), RunListItem.new('recipe', 'runlens_handler')],
      attrs: {
        'fqdn' => name,
        'ipaddress' => '10.0.0.11',
        'roles' => %w(base web),
        'platform' => 'ubuntu',
        'platform_version' => '22.04',
        'chef_packages' => { 'chef' => { 'version' => '18.4.12' } },
        'runlens' => { 'depends_on' => %w(db01.example.com role:cache) }.merge(runlens),
      },
      run_state: run_state
    )
  end

  def success_status(node: web_node, run_id: 'b4bd3e2a-0f5c-4bfb-8a67-11b1c1f6fb0a')
    start = Time.utc(2024, 5, 1, 10, 0, 0)
    file = Resource.new('file', '/etc/motd')
    Status.new(
      node: node,
      start_time: start,
      end_time: start + 42.5,
      elapsed_time: 42.5,
      # The action collection lists a resource once per updating action.
      updated_resources: [file, Resource.new('package', 'nginx'), file, Resource.new('service', 'nginx')],
      exception: nil,
      backtrace: nil,
      run_id: run_id
    )
  end

  def failure_status(node: web_node, run_id: '6f1c1d5e-8f4e-4a51-9d1e-52a0f2b37c1d')
    start = Time.utc(2024, 5, 1, 11, 0, 0)
    error = begin
      raise EnclosingDirectoryDoesNotExist, 'file[/failed/file] (web::default line 26) had an error: Parent directory /failed/file does not exist.'
    rescue EnclosingDirectoryDoesNotExist => e
      e
    end
    Status.new(
      node: node,
      start_time: start,
      end_time: start + 3,
      elapsed_time: 3.0,
      updated_resources: [Resource.new('template', '/etc/nginx/nginx.conf')],
      exception: error,
      backtrace: ["/opt/chef/lib/chef/provider/file.rb:12:in `action_create'", "/opt/chef/lib/chef/runner.rb:69:in `run_action'"],
      run_id: run_id
    )
  end

  # A Logger writing to a string, for assertions on what was logged.
  def string_logger
    io = StringIO.new
    logger = ::Logger.new(io)
    logger.formatter = proc { |sev, _t, _p, msg| "#{sev}: #{msg}\n" }
    [logger, io]
  end
end
