#
# Cookbook:: runlens_handler
# Recipe:: default
#
# Installs bunny into Chef's Ruby and enables Runlens::ReportHandler (from
# this cookbook's libraries/) as a report AND exception handler. Both happen at
# compile time, so put recipe[runlens_handler] first in the run list: the
# handler then also reports runs that fail while later recipes compile.
#

bunny = node['runlens']['bunny']
if bunny['install']
  chef_gem 'bunny' do
    version bunny['version'] if bunny['version']
    source bunny['source'] if bunny['source']
    compile_time true
  end
end

# Credentials from an encrypted data bag item ({"id": "amqp", "password": "…",
# "url": "amqps://runlens@rabbit.example.com/%2F"}). They go to the handler
# through node.run_state, which is never saved to the Chef server.
amqp = node['runlens']['amqp']
if amqp['data_bag']
  begin
    secret = amqp['data_bag_secret_file'] ? Chef::EncryptedDataBagItem.load_secret(amqp['data_bag_secret_file']) : nil
    item = data_bag_item(amqp['data_bag'], amqp['data_bag_item'], secret)
    node.run_state['runlens'] ||= {}
    node.run_state['runlens']['amqp_password'] = item['password'] if item['password']
    node.run_state['runlens']['amqp_url'] = item['url'] if item['url']
  rescue StandardError => e
    # A missing or undecryptable item must not stop the converge; the
    # handler then tries the attributes (and most likely fails to log in).
    Chef::Log.warn("runlens: cannot load data bag item #{amqp['data_bag']}/#{amqp['data_bag_item']}: #{e.class}")
  end
end

chef_handler 'Runlens::ReportHandler' do
  type report: true, exception: true
  action :nothing
end.run_action(:enable)
