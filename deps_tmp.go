//go:build tools

package tools

import (
	_ "github.com/alecthomas/kingpin/v2"
	_ "github.com/magefile/mage/mg"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/common/promslog"
	_ "github.com/prometheus/exporter-toolkit/web"
	_ "github.com/rabbitmq/amqp091-go"
)
