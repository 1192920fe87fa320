package versions_test

import (
	"context"
	"testing"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/versions"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ownFields is a frame without its name and children: the node's memory.
func ownFields(f stepflow.Frame) stepflow.Frame {
	f.Name, f.Children = "", nil
	return f
}

// kindCase builds a node of one kind named name, and says where to stop a
// v1 process so that the node's frame holds memory (at, relative to the
// node, then extra applies).
type kindCase struct {
	kind  string
	build func(name string) stepflow.Node[D]
	at    string
	extra int
}

func kindCases() []kindCase {
	return []kindCase{
		{kind: "do", build: func(n string) stepflow.Node[D] { return step(n, "x") }},
		{kind: "sequence", build: func(n string) stepflow.Node[D] {
			return combinators.Sequence(n, step("s1", "s1"), step("s2", "s2"))
		}, at: "s2"},
		{kind: "case", build: func(n string) stepflow.Node[D] {
			return combinators.Case(n, flag, step("t1", "t1"), step("t2", "t2")).Else(step("e1", "e1"))
		}, at: "t2"},
		{kind: "switch", build: func(n string) stepflow.Node[D] {
			return combinators.Switch(n, func(context.Context, *D) (string, error) { return "blue", nil },
				combinators.On("green", step("g1", "g1")),
				combinators.On("blue", step("b1", "b1"), step("b2", "b2")))
		}, at: "b2"},
		{kind: "wait", build: func(n string) stepflow.Node[D] { return wait(n, 4) }, extra: 2},
	}
}

// TestMemoryCarriesOverWhenKindIsKept renames a node of every kind while a
// process is inside it: its frame keeps all its memory.
func TestMemoryCarriesOverWhenKindIsKept(t *testing.T) {
	for _, kc := range kindCases() {
		t.Run(kc.kind, func(t *testing.T) {
			v1 := must(stepflow.New("f/v1", step("pre", "pre"), kc.build("x"), step("post", "post")))
			v2 := must(stepflow.New("f/v2", step("pre", "pre"), kc.build("y"), step("post", "post")))
			n, _ := v1.Node("x")
			require.Equal(t, kc.kind, n.Kind)
			reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil, versions.NewMigration[D]("f/v1", "f/v2").Rename("x", "y"))
			require.NoError(t, err)

			ctx, c := newCtx()
			pos := "x"
			if kc.at != "" {
				pos = "x/" + kc.at
			}
			st := until(t, ctx, c, v1, v1.Start(D{Flag: true}), pos)
			st = advance(t, ctx, c, v1, st, kc.extra)
			require.Equal(t, []string{pos}, st.Positions())
			old := st.Root.Child("x")
			if kc.kind != "do" && kc.kind != "sequence" {
				require.NotEqual(t, stepflow.Frame{}, ownFields(*old), "the frame holds memory")
			}

			moved, err := reg.Migrate(st)
			require.NoError(t, err)
			require.NoError(t, v2.Validate(moved))
			got := moved.Root.Child("y")
			require.NotNil(t, got)
			assert.Equal(t, ownFields(*old), ownFields(*got))
			assert.Equal(t, len(old.Children), len(got.Children))

			done := finish(t, ctx, c, reg, moved)
			want := finish(t, ctx, c, v1, st)
			assert.Equal(t, want.Data.Ran, done.Data.Ran, "finishing on v2 does what v1 would have done")
		})
	}
}

// TestMemoryResetWhenKindChanges keeps a node's name but changes its kind:
// its own memory is reset, active children that still exist keep theirs.
func TestMemoryResetWhenKindChanges(t *testing.T) {
	v1 := must(stepflow.New("f/v1",
		combinators.Case("x", flag, step("s", "s"), step("t", "t")),
		wait("w", 3), step("end", "end")))
	v2 := must(stepflow.New("f/v2",
		combinators.Sequence("x", step("s", "s"), step("t", "t")),
		step("w", "w"), step("end", "end")))
	reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil, versions.NewMigration[D]("f/v1", "f/v2"))
	require.NoError(t, err)
	ctx, c := newCtx()

	st := until(t, ctx, c, v1, v1.Start(D{Flag: true}), "x/t")
	require.Equal(t, combinators.Then, st.Root.Child("x").Branch)
	moved, err := reg.Migrate(st)
	require.NoError(t, err)
	assert.Equal(t, stepflow.Frame{Name: "x", Children: []stepflow.Frame{{Name: "t"}}}, *moved.Root.Child("x"),
		"case -> sequence: the branch is dropped, the position kept")
	assert.Equal(t, []string{"s", "t", "w", "end"}, finish(t, ctx, c, reg, moved).Data.Ran)

	st = until(t, ctx, c, v1, v1.Start(D{Flag: true}), "w")
	st = advance(t, ctx, c, v1, st, 1)
	require.Equal(t, stepflow.Waiting, st.Status)
	require.Equal(t, uint32(1), st.Root.Child("w").Count)
	moved, err = reg.Migrate(st)
	require.NoError(t, err)
	assert.Equal(t, stepflow.Frame{Name: "w"}, *moved.Root.Child("w"), "wait -> do: the poll count is dropped")
	assert.Equal(t, stepflow.Running, moved.Status, "a reset node may run at once")
	assert.True(t, moved.WakeAt.IsZero())
}

// TestUnknownKindsCarryMemory: a structure recorded as bare paths has no
// kinds, so frames keep their memory.
func TestUnknownKindsCarryMemory(t *testing.T) {
	v1 := must(stepflow.New("f/v1", wait("w", 3), step("end", "end")))
	v2 := must(stepflow.New("f/v2", wait("w", 3), step("end", "end")))
	reg, err := versions.New([]*stepflow.Flow[D]{v2}, nil,
		versions.NewMigration[D]("f/v1", "f/v2").Source(versions.Paths("w", "end")))
	require.NoError(t, err)
	ctx, c := newCtx()
	st := advance(t, ctx, c, v1, v1.Start(D{}), 1)
	moved, err := reg.Migrate(st)
	require.NoError(t, err)
	assert.Equal(t, *st.Root.Child("w"), *moved.Root.Child("w"))
}
