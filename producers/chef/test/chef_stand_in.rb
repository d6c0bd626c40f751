# frozen_string_literal: true

# The part of Chef Infra Client's API the cookbook touches, for tests that run
# with Debian's Ruby (no registry here serves the chef gem, and Debian has no
# ruby-chef). Each class follows the real one's interface and behaviour,
# method for method, as of chef/chef 19.4.14 (688d3ad3c3); the file each
# follows is named beside it. Nothing the cookbook does not call is here.

require 'forwardable'

module Chef
  VERSION = '18.4.12'

  # lib/chef/config.rb (mixlib-config): a Hash-like of settings.
  Config = { node_name: 'fallback.example.com', file_cache_path: '/var/chef/cache', why_run: false }

  # lib/chef/log.rb (mixlib-log): level methods taking a message.
  module Log
    @lines = []
    class << self
      attr_reader :lines

      %i(trace debug info warn error fatal).each do |level|
        define_method(level) { |msg| @lines << [level, msg.to_s] }
      end
    end
  end

  class EncryptedDataBagItem
    def self.load_secret(path)
      "secret-in-#{path}"
    end
  end

  # lib/chef/run_status.rb: attributes, clock, elapsed_time, the
  # resource_collection-based all/updated_resources, backtrace, success?,
  # failed?, to_h, formatted_exception.
  class RunStatus
    attr_reader :events, :start_time, :end_time
    attr_accessor :run_context, :exception, :run_id, :node

    def initialize(node, events)
      @node = node
      @events = events
    end

    # Tests set the clock instead of start_clock / stop_clock's Time.now.
    attr_writer :start_time, :end_time

    def elapsed_time
      @start_time && @end_time ? @end_time - @start_time : nil
    end

    def all_resources
      @run_context&.resource_collection&.all_resources
    end

    def updated_resources
      @run_context && @run_context.resource_collection.select(&:updated)
    end

    def backtrace
      @exception&.backtrace
    end

    def failed?
      !success?
    end

    def success?
      @exception.nil?
    end

    def formatted_exception
      @exception && "#{@exception.class.name}: #{@exception.message}"
    end

    def to_h
      { node: node, success: success?, start_time: start_time, end_time: end_time, elapsed_time: elapsed_time,
        all_resources: all_resources, updated_resources: updated_resources, exception: formatted_exception,
        backtrace: backtrace, run_id: run_id }
    end
  end

  # lib/chef/run_context.rb: the run context holds the resource collection
  # and (Chef >= 15) the action collection.
  class RunContext
    attr_accessor :action_collection, :resource_collection
  end

  # lib/chef/resource_collection.rb, as far as RunStatus uses it.
  class ResourceCollection
    include Enumerable

    def initialize(resources)
      @resources = resources
    end

    def all_resources
      @resources
    end

    def each(&block)
      @resources.each(&block)
    end
  end

  # lib/chef/action_collection.rb: one ActionRecord per action and
  # notification, filtered_collection with the same keyword filters, and
  # resources = the records' new_resource (so a resource appears once per
  # record).
  class ActionCollection
    include Enumerable
    extend Forwardable

    class ActionRecord
      attr_accessor :new_resource, :current_resource, :after_resource, :action, :exception, :error_description,
                    :elapsed_time, :conditional, :status, :nesting_level

      def initialize(new_resource, action, nesting_level)
        @new_resource = new_resource
        @action = action
        @nesting_level = nesting_level
      end

      def success?
        !exception
      end
    end

    attr_reader :action_records, :run_context, :events

    def initialize(events, run_context = nil, action_records = [])
      @action_records = action_records
      @events = events
      @run_context = run_context
    end

    def_delegators :@action_records, :each, :last

    def filtered_collection(max_nesting: nil, up_to_date: true, skipped: true, updated: true, failed: true, unprocessed: true)
      subrecords = action_records.select do |rec|
        (max_nesting.nil? || rec.nesting_level <= max_nesting) &&
          (rec.status == :up_to_date && up_to_date ||
            rec.status == :skipped && skipped ||
            rec.status == :updated && updated ||
            rec.status == :failed && failed ||
            rec.status == :unprocessed && unprocessed)
      end
      self.class.new(events, run_context, subrecords)
    end

    def resources
      action_records.map(&:new_resource)
    end
  end

  # lib/chef/handler.rb: delegators to the run status, the memoized
  # action-collection filters (note: @updated_resources ||= …, never reset
  # by run_report_safely), run_report_safely / run_report_unsafe, data.
  class Handler
    extend Forwardable

    attr_reader :run_status

    def_delegator :@run_status, :start_time
    def_delegator :@run_status, :end_time
    def_delegator :@run_status, :elapsed_time
    def_delegator :@run_status, :run_context
    def_delegator :@run_status, :exception
    def_delegator :@run_status, :backtrace
    def_delegator :@run_status, :node
    def_delegator :@run_status, :success?
    def_delegator :@run_status, :failed?

    def all_resources
      @all_resources ||= action_collection&.filtered_collection(unprocessed: false)&.resources || []
    end

    def updated_resources
      @updated_resources ||= action_collection&.filtered_collection(up_to_date: false, skipped: false, failed: false, unprocessed: false)&.resources || []
    end

    def failed_resources
      @failed_resources ||= action_collection&.filtered_collection(updated: false, up_to_date: false, skipped: false, unprocessed: false)&.resources || []
    end

    def action_collection
      @run_status.run_context.action_collection
    end

    def report; end

    def run_report_safely(run_status)
      run_report_unsafe(run_status)
    rescue Exception => e # rubocop:disable Lint/RescueException
      Chef::Log.error("Report handler #{self.class.name} raised #{e.inspect}")
      Array(e.backtrace).each { |line| Chef::Log.error(line) }
    ensure
      @run_status = nil
    end

    def run_report_unsafe(run_status)
      @run_status = run_status
      report
    end

    def data
      @run_status.to_h
    end
  end

  # A resource as the handler sees it: to_s is "type[name]"
  # (lib/chef/resource.rb to_s), ignore_failure a property (true, false or
  # :quiet).
  class Resource
    attr_reader :resource_name, :name
    attr_accessor :ignore_failure, :updated

    def initialize(type, name, ignore_failure: false)
      @resource_name = type
      @name = name
      @ignore_failure = ignore_failure
      @updated = false
    end

    def to_s
      "#{resource_name}[#{name}]"
    end
  end
end
