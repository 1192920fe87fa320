package console_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/console"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// Example mounts the console under /console/ in a program's own server,
// with actions enabled for the operators team only, then uses its JSON
// API as a CLI would: read a waiting process, approve it, and count.
func Example() {
	type release struct{ Approver string }
	flow := stepflow.Must(stepflow.New("release/v1",
		combinators.WaitSignal("approval", "approve", func(r *release, who []byte) error { r.Approver = string(who); return nil }),
		combinators.Do("ship", func(context.Context, *release) error { return nil }),
	))
	r, err := runner.New(store.NewMemory(), nil)
	if err != nil {
		panic(err)
	}
	releases, err := runner.Register(r, flow)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := releases.Start(ctx, "v1.2.0", release{}); err != nil {
		panic(err)
	}
	if _, err := r.Step(ctx); err != nil { // a service runs r.Run instead
		panic(err)
	}

	c, err := console.New(r, &console.Options{
		Actions: true,
		Authorize: func(req *http.Request, a console.Access) error {
			// Behind the program's own authentication: here, a header.
			if a.Action.Changes() && req.Header.Get("X-Team") != "operators" {
				return errors.New("only operators may change processes")
			}
			return nil
		},
	})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/console/", http.StripPrefix("/console", c))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	var p console.ProcessDetail
	get(srv.URL+"/console/api/processes/v1.2.0", &p)
	fmt.Println(p.Status, "-", p.Why)

	approve := func(team string) string {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/console/api/processes/v1.2.0/signal",
			strings.NewReader(`{"name":"approve","payload":"ada"}`))
		req.Header.Set("X-Team", team)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		var e console.ErrorResponse
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return strings.TrimSpace(fmt.Sprint(resp.StatusCode, " ", e.Error))
	}
	fmt.Println(approve("developers"))
	fmt.Println(approve("operators"))

	for n := 1; n > 0; {
		if n, err = r.Step(ctx); err != nil {
			panic(err)
		}
	}
	var counts console.CountsResponse
	get(srv.URL+"/console/api/counts", &counts)
	fmt.Println("done:", counts.ByStatus["done"])
	// Output:
	// waiting - waiting for approval (signal "approve")
	// 403 only operators may change processes
	// 200
	// done: 1
}

func get(url string, v any) {
	resp, err := http.Get(url)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		panic(err)
	}
}
