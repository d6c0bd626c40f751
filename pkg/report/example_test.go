package report_test

import (
	"errors"
	"fmt"

	"github.com/runlens/runlens/pkg/report"
)

func ExampleDecode() {
	body := []byte(`{"node_name":"web1","environment":"prod","status":"success",
		"run_start_time":"2018-09-14 19:37:42 +0000","run_end_time":"2018-09-14T19:39:34Z",
		"updated_resources":["service[nginx]","template[/etc/nginx/nginx.conf]"]}`)
	run, err := report.Decode(body)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(run.Format, run.Node, run.Environment, run.Status, run.Duration, run.UpdatedCount, run.Updated)

	_, err = report.Decode([]byte(`{"tag":"salt/job/20170720114629477127/new","data":{"minions":["a"]}}`))
	var rj *report.Rejected
	if errors.As(err, &rj) {
		fmt.Println(rj.Format, "|", rj.Reason)
	}
	// Output:
	// chef_handler web1 prod success 1m52s 2 [service[nginx] template[/etc/nginx/nginx.conf]]
	// salt | salt job-publish event, not a return
}
