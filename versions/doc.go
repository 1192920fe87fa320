// Package versions runs several versions of one flow side by side and moves
// in-flight processes from one version to the next.
//
// A process can run for days, and its flow changes while it runs: a step is
// added, renamed, removed, wrapped in a Retry. Every stepflow state names
// its flow version and its positions by path (State.Version,
// State.Positions), so a state of deploy/v1 can be translated into a state
// of deploy/v2 by mapping paths, without running anything. This package
// declares that translation, checks it when the program starts, and applies
// it.
//
// # Migrations
//
// A Migration goes from one version to the next. A position whose path
// exists in the new version maps to itself; rules cover the rest:
//
//   - Rename(from, to): the same node under a new name or in a new place
//     (also wrapping a step in a new Retry, Case or Sequence). Its frame
//     keeps its memory.
//   - Continue(from, to): a removed node; a process at it, or inside it,
//     continues at to, entered fresh.
//   - Restart(group): a process inside group starts the group again; the
//     group's steps run again.
//   - Drop(branch): a removed branch of a Parallel counts as completed.
//   - Custom(at, fn): fn decides per process, from the frame and the data.
//
// Fix adds a hook that fixes the data up (a field added in the new
// version). Migrations chain: a registry moves a deploy/v1 state through
// v1 -> v2 -> v3.
//
// # Memory of nodes
//
// Each active node keeps its memory in a stepflow.Frame: Count (polls of a
// wait, attempts of a retry, iterations of a loop), Index (ForEach
// position), Since and Until (wait start, next attempt, deadline), Branch
// (the decision of a Case or Switch, the phase of a Catch), Err and Payload.
// The rule is:
//
//   - a node that keeps its kind (stepflow.NodeInfo.Kind) in the new version
//     keeps all of its frame, whatever its new name or place;
//   - a node that changes kind keeps nothing of its own frame (it is as if
//     just entered), while its active children map by their own paths;
//   - a node that is new around a position (a wrapper) starts with an
//     empty frame: a new Retry starts at its first attempt, a new Case
//     evaluates its predicate when the process resumes;
//   - the target of a Continue or a Restart starts with an empty frame;
//   - positions inside a ForEach instance ("each/[3]/step") stay in their
//     instance.
//
// A Parallel entered with an empty frame starts every branch, a ForEach
// starts its items: a position may not move into one that is new or that
// changed kind unless a Restart or Continue rule says so, and the start-up
// check reports it.
//
// A migrated Waiting state stays Waiting only when every frame kept its
// memory; otherwise it becomes Running, and the next Apply computes the new
// wake time (a wait that is not due just waits again). Steps, Data,
// Signals, Record and Err are kept; Record and Err describe the past and keep
// the paths of the old version.
//
// A migration never resets a process silently: a position without a
// target is a *NoTargetError naming the path, and the state is returned
// unchanged. The result is validated against the new version.
//
// # Start-up check
//
// New builds a Registry and checks every migration against the structures
// of its two versions: every node of the old version (every place a process
// can be) must have a target. All problems are returned at once, so an
// incompatible deploy fails when the program starts, not at night on one
// process. Check runs the same check on one migration.
//
// # Deleting old versions
//
// A migration needs the structure of the old version, not its code.
// Record it with Structure (for example as JSON in testdata) and give it to
// Migration.Source; the old flow's code can then be deleted. Only the
// newest version must have a definition.
//
// # Policies
//
// Options.Policy chooses what Registry.Apply does with an older state:
// PolicyLazy migrates it to the newest version on its next Apply,
// PolicyPinned lets it finish on its own version, PolicyRefuse returns an
// *OutdatedError. Signal, Cancel, Redrive and Describe choose the version
// the same way. Registry.Migrate migrates explicitly under any policy.
//
// # Fingerprints
//
// stepflow.Flow.Fingerprint hashes a version's structure. Pin it in a test
// for every released version (Pin, or Registry.Pin for all versions at
// once) so that editing a released version in place, instead of adding the
// next version with a migration, fails the build.
package versions
