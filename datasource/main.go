// Command datasource is the backend of the runlens-topology-datasource
// Grafana plugin; Grafana starts it as
// dist/gpx_runlens-topology-datasource_<os>_<arch>.
package main

import (
	"os"

	"github.com/grafana/grafana-plugin-sdk-go/backend/datasource"
	"github.com/grafana/grafana-plugin-sdk-go/backend/log"

	"github.com/runlens/runlens/datasource/plugin"
)

func main() {
	if err := datasource.Manage(plugin.PluginID, plugin.NewInstance, datasource.ManageOpts{}); err != nil {
		log.DefaultLogger.Error("runlens datasource stopped", "err", err)
		os.Exit(1)
	}
}
