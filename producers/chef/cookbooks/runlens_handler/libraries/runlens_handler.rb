# frozen_string_literal: true

#
# Runlens::ReportHandler: the Chef report/exception handler that publishes
# runlens run reports. A thin wrapper: the report, the AMQP publishing and the
# spool live in runlens.rb, which does not need Chef.
#
# Enabled by recipe[runlens_handler]. Without the cookbook, in client.rb:
#
#   require '/path/to/runlens_handler/libraries/runlens_handler'
#   h = Runlens::ReportHandler.new('url' => 'amqp://runlens@rabbit.example.com/%2F',
#                                  'password_file' => '/etc/chef/runlens_amqp_password',
#                                  'spool_dir' => '/var/spool/runlens')
#   report_handlers << h
#   exception_handlers << h
#
require_relative 'runlens' unless defined?(Runlens::Shipper)
require 'chef/handler' unless defined?(Chef::Handler)

module Runlens
  class ReportHandler < ::Chef::Handler
    # config: settings that win over the node attributes, with the keys of
    # Runlens::Config (url, password_file, exchange, timeout, spool_dir, ...).
    def initialize(config = {})
      super()
      @overrides = (config || {}).to_h.each_with_object({}) { |(k, v), h| h[k.to_s] = v }
    end

    # Called by Chef at the end of the run (report handler) or when it failed
    # (exception handler). Never raises: a handler must not turn a converged
    # run into a failed one, nor hide the real failure.
    def report
      config = nil
      status = StatusView.new(self)
      config = Runlens::Config.from_node(status.node, @overrides)
      report = Runlens::Report.build(status, chef_version: chef_version, fallback_node_name: fallback_node_name)
      Runlens::Shipper.new(config, logger: ::Chef::Log).ship(report)
    rescue *Runlens::RESCUABLE => e
      secrets = begin
        config ? config.secrets : []
      rescue StandardError
        []
      end
      ::Chef::Log.warn(Runlens.redact("runlens: report handler failed: #{e.class}: #{e.message}", secrets))
      nil
    end

    private

    def chef_version
      defined?(::Chef::VERSION) ? ::Chef::VERSION : nil
    end

    def fallback_node_name
      ::Chef::Config[:node_name]
    rescue StandardError
      nil
    end

    # The run status as Runlens::Report.build reads it, from the handler's
    # own accessors (Chef::Handler delegates them to Chef::RunStatus).
    class StatusView
      def initialize(handler)
        @handler = handler
      end

      %i(node start_time end_time elapsed_time exception backtrace).each do |name|
        define_method(name) do
          @handler.public_send(name)
        rescue StandardError
          nil
        end
      end

      def run_id
        rs = @handler.run_status
        rs.respond_to?(:run_id) ? rs.run_id : nil
      rescue StandardError
        nil
      end

      # Chef >= 15 answers from the action collection; when the run failed
      # before there was a run context that raises, so fall back to
      # Chef::RunStatus#updated_resources.
      def updated_resources
        list = begin
          @handler.updated_resources
        rescue StandardError
          nil
        end
        if list.nil?
          rs = @handler.run_status
          list = begin
            rs.respond_to?(:updated_resources) ? rs.updated_resources : nil
          rescue StandardError
            nil
          end
        end
        Array(list)
      end
    end
  end
end
