package report

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/runlens/runlens/internal/fixtures"
)

// TestFixturesFastMatchesStd decodes every shared fixture, whole, with the
// single-pass decoder and with encoding/json alone (the fuzz seeds are cut
// down versions of the large ones).
func TestFixturesFastMatchesStd(t *testing.T) {
	for _, sub := range []string{"chef", "salt"} {
		paths, err := filepath.Glob(filepath.Join(fixtures.Dir(t, sub), "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			body, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			t.Run(sub+"/"+filepath.Base(p), func(t *testing.T) {
				checkSameDecode(t, body)
				checkEnvelopeMatchesStd(t, body)
			})
		}
	}
}

func checkSameDecode(t *testing.T, body []byte) {
	t.Helper()
	fast, fastErr := Decoder{}.Decode(body)
	std, stdErr := Decoder{stdOnly: true}.Decode(body)
	if !reflect.DeepEqual(fastErr, stdErr) {
		t.Fatalf("single-pass error %v, encoding/json error %v", fastErr, stdErr)
	}
	if !reflect.DeepEqual(fast, std) {
		t.Fatalf("single-pass decoded\n%+v\nencoding/json decoded\n%+v", fast, std)
	}
}

// TestFastEdgeCases holds the single-pass decoder to encoding/json on the
// shapes where JSON decoders are known to part ways, and checks which of
// them the single-pass decoder takes itself (took) rather than handing to
// encoding/json: the common ones must not cost a second decode.
func TestFastEdgeCases(t *testing.T) {
	const tail = `"status":"success","run_end_time":"2024-05-01T10:00:00Z"}`
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, c := range []struct {
		name, body string
		took       bool
	}{
		{"plain", `{"node_name":"a",` + tail, true},
		{"whitespace everywhere", " \t\r\n{ \"node_name\" : \"a\" ,\n" + tail + " \n", true},
		// encoding/json matches keys case-insensitively, by Unicode
		// folding: so does runlens.
		{"upper-case key", `{"NODE_NAME":"a",` + tail, true},
		{"mixed-case key", `{"Node_Name":"a","Status":"success","RUN_END_TIME":"2024-05-01T10:00:00Z"}`, true},
		{"kelvin sign folds to k", `{"node_name":"a","ro\u006ces":["x"],"run_end_time":"2024-05-01T10:00:00Z","status":"success","chef_version":"1","\u212aey":1}`, true},
		{"escaped key", `{"node\u005fname":"a",` + tail, true},
		{"key with invalid UTF-8", "{\"node_name\xff\":\"b\",\"node_name\":\"a\"," + tail, true},
		{"field named twice", `{"node_name":"a","node_name":"b",` + tail, false},
		{"field named twice, cases differ", `{"node_name":"a","NODE_NAME":"b",` + tail, false},
		{"pointer field named twice", `{"node_name":"a","error":{"class":"A"},"error":{"message":"m"},"status":"failure","run_end_time":"2024-05-01T10:00:00Z"}`, false},
		{"unknown key twice", `{"node_name":"a","x":1,"x":2,` + tail, true},
		{"invalid UTF-8 in a value", "{\"node_name\":\"a\",\"fqdn\":\"f\xff\xfe\"," + tail, true},
		{"escapes in a value", `{"node_name":"a","fqdn":"\u00e9\ud83d\ude00\ud800\n\/",` + tail, true},
		{"control character in a string", "{\"node_name\":\"a\",\"fqdn\":\"f\x01\"," + tail, false},
		{"control character in a skipped string", "{\"node_name\":\"a\",\"x\":\"f\x1f\"," + tail, false},
		{"bad escape", `{"node_name":"a","x":"\x",` + tail, false},
		{"short unicode escape", `{"node_name":"a","x":"\u12",` + tail, false},
		{"nesting at encoding/json's limit", `{"node_name":"a","x":` + deep(maxNesting-1) + `,` + tail, true},
		{"nesting past encoding/json's limit", `{"node_name":"a","x":` + deep(maxNesting) + `,` + tail, false},
		{"deep inside a list field", `{"node_name":"a","roles":` + deep(maxNesting) + `,` + tail, false},
		{"leading zero", `{"node_name":"a","x":01,` + tail, false},
		{"bare minus", `{"node_name":"a","x":-,` + tail, false},
		{"dot without digits", `{"node_name":"a","x":1.,` + tail, false},
		{"exponent without digits", `{"node_name":"a","x":1e+,` + tail, false},
		{"numbers", `{"node_name":"a","x":[-0,0.5,1e400,-1E-7,123456789012345678901234567890],"run_elapsed_time":1e400,` + tail, true},
		{"literals", `{"node_name":"a","x":[true,false,null],` + tail, true},
		{"truncated literal", `{"node_name":"a","x":nul,` + tail, false},
		{"trailing garbage", `{"node_name":"a",` + tail + ` x`, false},
		{"trailing comma", `{"node_name":"a",` + strings.TrimSuffix(tail, "}") + `,}`, false},
		{"missing colon", `{"node_name" "a",` + tail, false},
		{"non-string key", `{1:"a",` + tail, false},
		{"unterminated", `{"node_name":"a",`, false},
		{"list where a struct is expected", `{"message_type":"run_converge","node_name":"a","node":[],` + tail, false},
		{"string where a list of resources is expected", `{"message_type":"run_converge","node_name":"a","resources":"x",` + tail, false},
		{"null struct and list", `{"message_type":"run_converge","node_name":"a","node":null,"resources":null,"error":null,` + tail, true},
		{"null resource", `{"message_type":"run_converge","node_name":"a","resources":[null,{"type":"t","name":"n","status":"updated"}],` + tail, true},
		{"empty resources", `{"message_type":"run_converge","node_name":"a","resources":[],` + tail, true},
		{"loose scalars", `{"node_name":["a",1,null,{"x":1},[2]],"roles":"r","run_list":[["x"],{"y":1},null,true],"updated_resources_count":"3",` + tail, true},
		{"salt return null", `{"jid":"1","id":"m","fun":"state.apply","_stamp":"2024-05-01T10:00:00","return":null}`, true},
		{"salt states", `{"jid":"1","id":"m","fun":"state.apply","_stamp":"2024-05-01T10:00:00","return":{"a_|-b_|-c_|-d":{"result":true,"changes":{"x":1}},"a_|-b_|-c_|-d":{"result":false},"e_|-f_|-g_|-h":null}}`, true},
		{"salt state not an object", `{"jid":"1","id":"m","fun":"state.apply","_stamp":"2024-05-01T10:00:00","return":{"a_|-b_|-c_|-d":"x"}}`, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := []byte(c.body)
			checkSameDecode(t, body)
			checkEnvelopeMatchesStd(t, body)
			var env envelope
			if took := fastUnmarshal(body, envelopePlan, unsafe.Pointer(&env)); took != c.took {
				t.Errorf("single-pass decoder took the message: %v, want %v", took, c.took)
			}
		})
	}
}

// TestEnvelopePlanIsComplete guards the decoder's speed: every type in the
// envelope (and in a Salt state run's return) has a plan of its own, so
// none of them falls back to encoding/json value by value. A new field of a
// type the plans do not cover fails here, not silently in the benchmark.
func TestEnvelopePlanIsComplete(t *testing.T) {
	for _, root := range []*typePlan{envelopePlan, planFor(reflect.TypeFor[map[string]saltState]())} {
		walkPlans(root, map[*typePlan]bool{}, func(p *typePlan) {
			if p.kind == planStd {
				t.Errorf("%s decodes through encoding/json", p.typ)
			}
		})
	}
}

// TestPlanFieldsMatchEncodingJSON checks the plans' field names against the
// ones encoding/json itself uses for the same struct (the keys it writes
// when it encodes a zero value), embedded structs included.
func TestPlanFieldsMatchEncodingJSON(t *testing.T) {
	walkPlans(envelopePlan, map[*typePlan]bool{}, func(p *typePlan) {
		if p.kind != planStruct {
			return
		}
		b, err := json.Marshal(reflect.New(p.typ).Interface())
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		var want, got []string
		for k := range m {
			want = append(want, k)
		}
		for _, f := range p.fields {
			got = append(got, f.name)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: plan has fields %v, encoding/json %v", p.typ, got, want)
		}
	})
}

// TestPlanDominantFields checks the Go rules for embedded fields the plans
// follow, on a struct built to exercise them, against encoding/json.
func TestPlanDominantFields(t *testing.T) {
	type inner struct {
		A string `json:"a"` // hidden by outer's a
		B string // untagged: hidden by the tagged B at the same depth
		C string `json:"B"`
		D string `json:"d"`
		E string // ties with other's E: both hidden
	}
	type other struct {
		E string
		F string `json:"f"`
	}
	type outer struct {
		inner
		other
		A string `json:"a"`
		G string `json:"-"`
		H string `json:"h,omitempty"`
		I string `json:"!#$%"`
		J string `json:"bad\"tag"` // not a valid tag name: the field name J
	}
	body := []byte(`{"a":"1","B":"3","d":"4","E":"5","f":"6","G":"7","-":"8","h":"9","!#$%":"10","j":"11"}`)
	p := planFor(reflect.TypeFor[outer]())
	if p.kind != planStruct {
		t.Fatalf("plan kind %d", p.kind)
	}
	var fast, std outer
	if !fastUnmarshal(body, p, unsafe.Pointer(&fast)) {
		t.Fatal("single-pass decoder gave up")
	}
	if err := json.Unmarshal(body, &std); err != nil {
		t.Fatal(err)
	}
	if fast != std {
		t.Errorf("single-pass decoded %+v, encoding/json %+v", fast, std)
	}
}

func walkPlans(p *typePlan, seen map[*typePlan]bool, f func(*typePlan)) {
	if p == nil || seen[p] {
		return
	}
	seen[p] = true
	f(p)
	walkPlans(p.elem, seen, f)
	for _, fp := range p.fields {
		walkPlans(fp.plan, seen, f)
	}
}

// TestEachElement checks the list walk the loose types use against
// json.Unmarshal into []json.RawMessage, which it replaced.
func TestEachElement(t *testing.T) {
	for _, in := range []string{
		`[]`, ` [ ] `, `[1]`, `[1,"a",null,{"x":[1]},[2,[3]]]`, `[1,]`, `[,1]`, `[1 2]`, `[`, `]`, `[1]x`,
		`{"a":1}`, `"x"`, `[` + strings.Repeat(`[`, maxNesting) + strings.Repeat(`]`, maxNesting) + `]`,
		`[` + strings.Repeat(`[`, maxNesting-2) + strings.Repeat(`]`, maxNesting-2) + `]`,
	} {
		var got []string
		ok := eachElement([]byte(in), func(e []byte) { got = append(got, string(e)) })
		var raw []json.RawMessage
		err := json.Unmarshal([]byte(in), &raw)
		if ok != (err == nil) {
			t.Errorf("%.40q: eachElement ok %v, json.Unmarshal error %v", in, ok, err)
			continue
		}
		if !ok {
			continue
		}
		var want []string
		for _, r := range raw {
			want = append(want, string(r))
		}
		if !slices.Equal(got, want) {
			t.Errorf("%.40q: elements %q, want %q", in, got, want)
		}
	}
}
