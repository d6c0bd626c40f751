// Command gen writes the runlens dashboards as JSON:
//
//	go run ./dashboards/gen            # from the module root
//	go run ./dashboards/gen -dir path  # elsewhere
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/runlens/runlens/dashboards"
)

func main() {
	dir := flag.String("dir", "dashboards", "Directory to write the dashboards' JSON files to.")
	flag.Parse()
	for _, d := range dashboards.All() {
		built, err := d.Build()
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", d.File, err)
			os.Exit(1)
		}
		b, err := dashboards.Marshal(built)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", d.File, err)
			os.Exit(1)
		}
		path := filepath.Join(*dir, d.File)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("wrote", path)
	}
}
