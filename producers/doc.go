// Package producers holds runlens' report producers, which are not Go: the
// Chef report handler cookbook (chef/cookbooks/runlens_handler, Ruby with
// Bunny) and the Salt returner (salt/_returners/runlens_amqp.py, Python with
// pika). Both publish to the chef_reports fanout exchange with persistent
// messages and publisher confirms.
//
// The package's tests run the producers' own Ruby and Python test suites and
// check end to end that what they publish through the real broker is accepted
// by report.Decode. They need Debian's ruby, ruby-bunny and python3-pika and
// RabbitMQ on 127.0.0.1:5672 (guest/guest).
package producers
