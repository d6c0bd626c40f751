#
# Cookbook:: runlens_handler
# Recipe:: default
#
# Enables Runlens::ReportHandler (from this cookbook's libraries/) as a report
# AND exception handler, and for the amqp transport installs the bunny gem
# into Chef's Ruby when it is missing. Both happen at compile time, so put
# recipe[runlens_handler] first in the run list: the handler then also
# reports runs that fail while later recipes compile. (Runs that fail before
# any recipe compiles, on registration or node load, are reported only by a
# handler registered in client.rb or client.d: see the README.)
#
# Nothing here may fail the run: a problem is logged and the handler copes
# (it spools what it cannot send).
#

runlens = node['runlens']
config = Runlens::Config.from_node(node)

# Credentials from an encrypted data bag item ({"id": "amqp", "password": "…",
# "url": "amqps://runlens@rabbit.example.com/%2F", "http_token": "…"}). They
# go to the handler through node.run_state, which is never saved to the Chef
# server.
amqp = runlens['amqp']
if amqp['data_bag']
  begin
    secret = amqp['data_bag_secret_file'] ? Chef::EncryptedDataBagItem.load_secret(amqp['data_bag_secret_file']) : nil
    item = data_bag_item(amqp['data_bag'], amqp['data_bag_item'], secret)
    node.run_state['runlens'] ||= {}
    node.run_state['runlens']['amqp_password'] = item['password'] if item['password']
    node.run_state['runlens']['amqp_url'] = item['url'] if item['url']
    node.run_state['runlens']['http_token'] = item['http_token'] if item['http_token']
  rescue StandardError => e
    # A missing or undecryptable item must not stop the converge; the
    # handler then tries the attributes (and most likely fails to log in).
    Chef::Log.warn("runlens: cannot load data bag item #{amqp['data_bag']}/#{amqp['data_bag_item']}: #{e.class}")
  end
end

# Bunny only for the amqp transport, and only when it is not loadable yet.
if config.resolved_transport == 'amqp' && runlens['bunny']['install'] && !Runlens.bunny_status.first
  bunny = runlens['bunny']
  error = nil
  begin
    gem = chef_gem 'bunny' do
      version bunny['version'] if bunny['version']
      source bunny['source'] if bunny['source']
      compile_time false
      # Chef logs a failed install and goes on (and the run's reports count
      # it as an ignored failure, not a failed resource).
      ignore_failure true
      action :nothing
    end
    gem.run_action(:install)
    Gem.clear_paths if defined?(Gem) && Gem.respond_to?(:clear_paths)
  rescue StandardError, ScriptError => e
    error = "#{e.class}: #{Runlens.scrub(e.message.to_s.lines.first.to_s.strip)}"
  end
  ok, why = Runlens.bunny_status
  unless ok
    error ||= why
    node.run_state['runlens'] ||= {}
    node.run_state['runlens']['bunny_error'] = error
    Chef::Log.warn("runlens: the bunny gem could not be installed (#{error}); the report handler spools its " \
                   "reports until it can be loaded. Set node['runlens']['transport'] = 'http' to report to the " \
                   'exporter without gems')
  end
end

begin
  chef_handler 'Runlens::ReportHandler' do
    type report: true, exception: true
    action :nothing
  end.run_action(:enable)
rescue StandardError => e
  Chef::Log.warn("runlens: could not enable the report handler: #{e.class}: #{Runlens.scrub(e.message)}")
end
