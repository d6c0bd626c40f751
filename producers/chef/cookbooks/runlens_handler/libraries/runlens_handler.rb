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
      report = Runlens::Report.build(status, chef_version: chef_version, fallback_node_name: fallback_node_name,
                                             why_run: why_run?)
      Runlens::Shipper.new(config, logger: ::Chef::Log).ship(report, disabled: disabled_reason(config, status.node))
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

    def why_run?
      ::Chef::Config[:why_run] ? true : false
    rescue StandardError
      false
    end

    # Publishing over AMQP needs Bunny. When it cannot be loaded (the recipe
    # could not install it, or it was never installed), the handler does
    # not try: it says why once and spools the report, sent by a later run
    # once Bunny is there (or use transport 'http', which needs no gem).
    def disabled_reason(config, node)
      return nil unless config.resolved_transport == 'amqp'

      ok, why = Runlens.bunny_status
      return nil if ok

      install = Runlens.dig(node.respond_to?(:run_state) ? node.run_state : nil, 'runlens', 'bunny_error')
      "the bunny gem cannot be loaded (#{why})#{install ? "; installing it failed: #{install}" : ''}; " \
        "the AMQP transport is disabled for this run (set node['runlens']['transport'] = 'http' to report without gems)"
    rescue StandardError => e
      "cannot check for the bunny gem: #{e.class}"
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

      # The run's resources come from its action collection
      # (lib/chef/action_collection.rb action_records: one record per
      # action and notification, with status :updated, :up_to_date,
      # :skipped, :failed or :unprocessed). They are read from the records
      # directly rather than through Chef::Handler#updated_resources and
      # #failed_resources: those memoize (@updated_resources ||= …,
      # lib/chef/handler.rb) and run_report_safely resets only
      # @run_status, so a handler instance that lives across the runs of a
      # daemonized chef-client would report its first run's resources for
      # ever. When the run failed before there was a run context, there are
      # no records; Chef::RunStatus#updated_resources is the fallback.
      def updated_resources
        recs = records
        return recs.select { |r| r.status == :updated }.map(&:new_resource) if recs

        rs = @handler.run_status
        Array(rs.respond_to?(:updated_resources) ? rs.updated_resources : nil)
      rescue StandardError
        []
      end

      # Failed resources, except those with ignore_failure (true or :quiet):
      # their failure did not fail the run.
      def failed_resources
        recs = records
        return [] unless recs

        recs.select { |r| r.status == :failed && !ignored?(r.new_resource) }.map(&:new_resource)
      rescue StandardError
        []
      end

      # How many distinct resources (type and name) the run had records of;
      # nil when it never got a run context.
      def total_resources
        recs = records
        recs&.map { |r| r.new_resource.to_s }&.uniq&.length
      rescue StandardError
        nil
      end

      private

      def records
        rc = @handler.run_status&.run_context
        ac = rc.respond_to?(:action_collection) ? rc.action_collection : nil
        ac.respond_to?(:action_records) ? Array(ac.action_records) : nil
      rescue StandardError
        nil
      end

      def ignored?(resource)
        resource.respond_to?(:ignore_failure) && resource.ignore_failure ? true : false
      rescue StandardError
        false
      end
    end
  end
end
