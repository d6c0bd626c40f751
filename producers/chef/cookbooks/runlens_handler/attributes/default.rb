#
# runlens_handler attributes. Never put the AMQP password in this file or in
# any other file of the cookbook: set node['runlens']['amqp']['password'] from
# a role, environment or policy, or (better) point ['data_bag'] at an
# encrypted data bag item holding it.
#

# How reports travel: 'amqp' (to RabbitMQ with the bunny gem), 'http' (to the
# runlens exporter's data collector endpoint with Ruby's Net::HTTP: no gem, no
# compiler needed) or 'auto' (http when ['http']['url'] is set, else amqp).
default['runlens']['transport'] = 'auto'

# The exporter's data collector endpoint (its --ingest.listen-address or web
# listener, path /data-collector/v0/) and the token of its --ingest.token-file
# (from an encrypted data bag item's "http_token", a file, or this attribute).
default['runlens']['http']['url'] = nil
default['runlens']['http']['token'] = nil
default['runlens']['http']['token_file'] = nil
default['runlens']['http']['ca_file'] = nil
default['runlens']['http']['verify_peer'] = true

# AMQP URL *without* the password: amqp[s]://user@host:port/vhost (the vhost
# URL-encoded: %2F is "/"). Several handlers may publish to one exchange.
default['runlens']['amqp']['url'] = 'amqp://guest@127.0.0.1:5672/%2F'
# The password, if not from a data bag (node attributes are saved on the Chef
# server with the node; prefer the data bag or password_file).
default['runlens']['amqp']['password'] = nil
# Or a file on the node whose first line is the password.
default['runlens']['amqp']['password_file'] = nil
# Encrypted data bag item with "password" (and optionally "url"): the recipe
# loads it with data_bag_item and the secret below (nil: Chef's default
# encrypted_data_bag_secret) and hands it to the handler in node.run_state.
default['runlens']['amqp']['data_bag'] = nil
default['runlens']['amqp']['data_bag_item'] = 'amqp'
default['runlens']['amqp']['data_bag_secret_file'] = nil

# The fanout exchange runlens consumes. The handler declares it (durable
# fanout, as the exporter does) unless declare_exchange is false.
default['runlens']['amqp']['exchange'] = 'chef_reports'
default['runlens']['amqp']['declare_exchange'] = true

# Seconds to wait for the broker's publisher confirm (and socket reads and
# writes), and for the TCP connection. The whole shipment (connect, spooled
# reports, this report) is cut at `deadline` seconds (nil: connect_timeout +
# 2 * timeout), so an unreachable broker delays the end of the run by at
# most that.
default['runlens']['amqp']['timeout'] = 5
default['runlens']['amqp']['connect_timeout'] = 5
default['runlens']['amqp']['deadline'] = nil
default['runlens']['amqp']['connection_name'] = 'runlens-chef-handler'

# TLS (amqps:// URLs).
default['runlens']['amqp']['tls']['ca_file'] = nil
default['runlens']['amqp']['tls']['cert_file'] = nil
default['runlens']['amqp']['tls']['key_file'] = nil
default['runlens']['amqp']['tls']['verify_peer'] = true

# Reports that could not be published are kept here (at most spool_max files,
# the oldest dropped first) and sent before the next run's report. nil turns
# the spool off: a report that cannot be published is then dropped.
default['runlens']['spool_dir'] = ::File.join(Chef::Config[:file_cache_path], 'runlens_spool')
default['runlens']['spool_max'] = 100

# Node or role names this node depends on (topology edges in runlens).
default['runlens']['depends_on'] = []

# The bunny gem (transport amqp only), installed into Chef's own Ruby with
# chef_gem when it is not there yet. Bunny needs sorted_set, which needs
# rbtree, a C extension: a node without a compiler or gem access cannot
# install it. That never fails the run: the recipe logs why, and the handler
# spools its reports until Bunny can be loaded. Set install to false where it
# is pre-installed (baked into the image) or where the http transport is used.
default['runlens']['bunny']['install'] = true
default['runlens']['bunny']['version'] = '~> 2.19'
# A gem source (URL or local .gem path); nil: Chef's configured rubygems_url.
default['runlens']['bunny']['source'] = nil
