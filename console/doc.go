// Package console is an operator console over a runner: an http.Handler
// that a program mounts in its own server, behind its own authentication,
// as it would net/http/pprof. It serves a JSON API and HTML pages built on
// the same code, for every flow the runner hosts. Its pages are rendered on
// the server from embedded templates and an embedded style sheet: nothing
// is fetched from the network, no script runs, and every page works as
// plain HTML forms.
//
// A caller's duties, in order:
//
//  1. Register the flows with the runner (runner.Register,
//     runner.RegisterVersions): the console reads and changes the
//     processes of those flows; processes of other flows it lists, shows
//     by their record, and deletes.
//  2. Create the console with New. It is read-only unless
//     Options.Actions is set; give Options.Authorize to decide, per
//     request, who may list, read and change what (see Access).
//  3. Mount it in your server, at its root or under a prefix, behind
//     your authentication.
//
// For example:
//
//	c, err := console.New(r, &console.Options{Actions: true, Authorize: authz})
//	mux.Handle("/console/", http.StripPrefix("/console", c))
//
// Every link the pages hold is relative, so the console works wherever it
// is mounted.
//
// # JSON API
//
// Paths are relative to where the console is mounted. The types are in
// api.go, which imports only the standard library, for clients to reuse.
//
//	GET  /api/processes?flow=&version=&status=&quarantined=true&id_prefix=&position=&error_kind=&after=&limit=
//	     -> ListResponse: one page, ordered by id; Next is the cursor of the next page
//	GET  /api/counts?flow=&version=             -> CountsResponse
//	GET  /api/processes/{id}                    -> ProcessDetail
//	POST /api/processes/{id}/{action}           -> ActionResponse
//	     signal {"name", "payload"}, cancel {"reason"}, redrive, resolve {"how"}, retry, migrate, delete
//	POST /api/bulk                              -> BulkResponse
//	     {"action", "filter", "reason"|"name","payload"|"how", "expect", "dry_run"}
//
// Errors come as an ErrorResponse with a Code and a fitting HTTP status.
// Lists are served by the store's List with a store.Filter (its indexes),
// one page at a time: never a scan of every process by the console.
//
// # Bulk actions
//
// A bulk action runs one action on every process a filter matches. It
// takes two requests: without Expect (or with DryRun) the console counts
// the matches and does nothing; with Expect equal to that count it acts,
// in batches of Options.BulkBatch processes listed by id, and reports how
// many succeeded and why each other one failed. If the count has changed
// in between, it refuses (409, CodeCountChanged) with the new count, so
// that nobody acts on processes they did not see counted. A filter that
// matches more than Options.BulkLimit processes is refused.
//
// # Authorization and cross-site requests
//
// Options.Authorize is called for every request the console serves, with
// the action asked, the flow and the process id when known, before the
// console answers anything about them; an error refuses the request with
// 403 and its text. A list or count without a flow in its filter asks for
// every flow (Access.Flow ""), and so does a request about a process that
// does not exist: a caller allowed one flow only learns nothing of other
// flows, not even which ids exist.
//
// Every POST first passes http.CrossOriginProtection: a browser request
// from another origin (by its Sec-Fetch-Site or Origin header) is refused
// with 403, so a page elsewhere cannot make an operator's browser act.
// Same-origin forms and clients that send neither header (a CLI, curl)
// pass; Options.TrustedOrigins adds origins. With Options.Actions off,
// every POST is refused with 403 (CodeActionsDisabled).
//
// # Pages and their element ids
//
// The pages give stable ids and classes to what a browser test looks for:
//
//	list page (GET /):
//	  form#filters                     the filter form (fields named as the API's query parameters)
//	  nav#counts, a#count-all, span#count-total, a#count-<status>, a#count-quarantined
//	                                   counts per status, each a link to its processes; a.current is the one filtered on
//	  table#processes                  the page of processes: tr.process[data-id][data-status] with td.id a (link to the process page),
//	                                   td.version, td.status, td.position, td.error-kind, td.due, td.updated, td.revision, td.owner
//	  td#no-processes                  when nothing matches
//	  nav#paging, a#next-page, a#first-page
//	  a#bulk-link                      the bulk page for the same filter (actions on)
//	  p#flash                          after a deletion
//	process page (GET /processes/{id}):
//	  span#process-id, span#process-status, dd#process-version, dd#process-why, dd#process-error,
//	  time#process-wake, dd#process-quarantine, dd#process-positions, dd#process-intent, dd#process-problem,
//	  dd#process-steps, dd#process-revision, dd#process-updated, dd#process-due, dd#process-owner
//	  section#actions with form#action-signal, #action-cancel, #action-redrive, #action-resolve,
//	                                   #action-retry, #action-migrate, #action-delete (those that apply; actions on)
//	  p#flash, p#action-error          the outcome of an action
//	  ul#legend, ul#diagram            the flow: li.node.node-<status>[data-path][data-status] per node, with
//	                                   .current on the process's positions, .parallel (branches side by side,
//	                                   ul.branches), .foreach (span.items of span.item.item-<status>), kind-<kind>;
//	                                   composite nodes are <details>, open where something is active, waiting,
//	                                   failed or canceled, folded where all is done, skipped or pending
//	  pre#process-data, p#process-data-error
//	  table#signals (tr.signal), table#history (tr.entry)
//	bulk page (GET /bulk, POST /bulk):
//	  form#bulk-form, section#bulk-count with span#bulk-matched and form#bulk-confirm (carries expect),
//	  section#bulk-result with span#bulk-succeeded, span#bulk-failed, table#bulk-failures (tr.failure[data-id]),
//	  p#bulk-error, p#actions-disabled
//	error page: h1#error-status, p#error-message, p#error-code
//
// Node statuses are pending, active, waiting, done, skipped, failed and
// canceled; process statuses are those of stepflow.Status (running,
// waiting, done, failed, canceled, needs-attention).
package console
