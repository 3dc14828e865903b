// health reads Kubernetes objects and prints, for each, what the two GitOps tools groupbinder's
// users run make of its status: kstatus (sigs.k8s.io/cli-utils, what Flux's `wait: true`,
// `healthChecks` and `kubectl wait` use) and an Argo CD Lua health check, run by gopher-lua,
// the interpreter Argo CD embeds, the way Argo CD runs it (the object as the global `obj`, the
// script returns a table with `status` and `message`).
//
//	health -lua check.lua < objects.json
//
// objects.json is a JSON array of objects (or a List); one JSON line per object goes out:
// {"name", "kstatus", "kstatusMessage", "argocd", "argocdMessage"}.
// Built by tools/build-control-plane.sh; never imported by the Rust code.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Name           string `json:"name"`
	Kstatus        string `json:"kstatus"`
	KstatusMessage string `json:"kstatusMessage"`
	Argocd         string `json:"argocd"`
	ArgocdMessage  string `json:"argocdMessage"`
}

func main() {
	script := flag.String("lua", "", "file holding the Argo CD health check (Lua)")
	flag.Parse()
	if *script == "" {
		fail(fmt.Errorf("-lua is required"))
	}
	check, err := os.ReadFile(*script)
	if err != nil {
		fail(err)
	}
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	// As the API machinery decodes objects: whole numbers as int64, which kstatus expects.
	var input any
	if err := utiljson.Unmarshal(data, &input); err != nil {
		fail(fmt.Errorf("reading objects: %w", err))
	}
	objects, ok := input.([]any)
	if list, isList := input.(map[string]any); isList {
		objects, ok = list["items"].([]any)
	}
	if !ok {
		fail(fmt.Errorf("want a JSON array of objects or a List"))
	}
	out := json.NewEncoder(os.Stdout)
	for _, o := range objects {
		object, ok := o.(map[string]any)
		if !ok {
			fail(fmt.Errorf("an item is not an object"))
		}
		u := &unstructured.Unstructured{Object: object}
		v := verdict{Name: u.GetName()}
		result, err := status.Compute(u)
		if err != nil {
			v.Kstatus, v.KstatusMessage = "Error", err.Error()
		} else {
			v.Kstatus, v.KstatusMessage = string(result.Status), result.Message
		}
		v.Argocd, v.ArgocdMessage, err = argocd(string(check), object)
		if err != nil {
			v.Argocd, v.ArgocdMessage = "Error", err.Error()
		}
		if err := out.Encode(v); err != nil {
			fail(err)
		}
	}
}

// argocd runs the health check as Argo CD's resource_customizations do: a fresh state with the
// safe standard libraries, the object as `obj`, the returned table's `status` and `message`.
func argocd(script string, object map[string]any) (string, string, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.StringLibName, lua.OpenString},
		{lua.MathLibName, lua.OpenMath},
	} {
		l.Push(l.NewFunction(lib.open))
		l.Push(lua.LString(lib.name))
		l.Call(1, 0)
	}
	l.SetGlobal("obj", toLua(l, object))
	if err := l.DoString(script); err != nil {
		return "", "", err
	}
	table, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("the health check returned %s, not a table", l.Get(-1).Type())
	}
	return lua.LVAsString(table.RawGetString("status")), lua.LVAsString(table.RawGetString("message")), nil
}

// toLua converts decoded JSON as Argo CD's Lua VM does: objects and arrays to tables (arrays
// from index 1), numbers, strings, booleans; null to nil.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case map[string]any:
		t := l.NewTable()
		for key, item := range v {
			t.RawSetString(key, toLua(l, item))
		}
		return t
	case []any:
		t := l.NewTable()
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case string:
		return lua.LString(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case bool:
		return lua.LBool(v)
	default:
		return lua.LNil
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "health:", err)
	os.Exit(2)
}
