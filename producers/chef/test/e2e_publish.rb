# frozen_string_literal: true

# Publishes one success and one failure report through the real handler
# classes (Runlens::Report + Runlens::Shipper), for producers_test.go to
# consume and decode in Go.
#
#   ruby e2e_publish.rb URL_WITHOUT_PASSWORD PASSWORD EXCHANGE SUCCESS_RUN_ID FAILURE_RUN_ID
#
# With RUNLENS_E2E_HTTP_URL and RUNLENS_E2E_HTTP_TOKEN set, the reports go
# over the http transport to that exporter's data collector endpoint instead
# (the AMQP arguments are then unused).
#
# Exits 1 unless the broker confirmed both reports.
require_relative 'support'

url, password, exchange, ok_id, failed_id = ARGV
abort "usage: #{$PROGRAM_NAME} URL PASSWORD EXCHANGE SUCCESS_RUN_ID FAILURE_RUN_ID" unless failed_id

logger = ::Logger.new($stderr)
config = Runlens::Config.new(url: url, password: password, exchange: exchange, timeout: 5, connect_timeout: 5,
                             http_url: ENV['RUNLENS_E2E_HTTP_URL'], http_token: ENV['RUNLENS_E2E_HTTP_TOKEN'])
statuses = [Stand.success_status(run_id: ok_id), Stand.failure_status(run_id: failed_id)]
results = statuses.map do |status|
  Runlens::Shipper.new(config, logger: logger).ship(Runlens::Report.build(status, chef_version: '18.4.12'))
end
puts results.inspect
exit(results.all?(:sent) ? 0 : 1)
