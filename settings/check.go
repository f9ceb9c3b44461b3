package settings

import (
	"cmp"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The structural pass: before the values are decoded, the YAML tree is walked against the
// file's schema so that unknown keys, values of the wrong type and malformed UDIDs are all
// reported in the same run as the value problems, each with its line. The offending entries
// are dropped from the tree, which then decodes cleanly and gets its values checked.

// kind is what a key holds in the file.
type kind int

const (
	kindString kind = iota
	kindBool
	kindInt
	kindMap
	kindList
)

type field struct {
	kind     kind
	children map[string]field // kindMap
	elem     *field           // kindList: what each entry is
}

// fieldOf derives the schema of one Go type of the file format.
func fieldOf(t reflect.Type) field {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		return field{kind: kindMap, children: schemaOf(t)}
	case reflect.Slice:
		e := fieldOf(t.Elem())
		return field{kind: kindList, elem: &e}
	case reflect.Bool:
		return field{kind: kindBool}
	case reflect.Int, reflect.Int64:
		return field{kind: kindInt}
	}
	return field{kind: kindString}
}

// schemaOf derives the file schema from the mapstructure tags, so it cannot drift from
// what the decoder accepts.
func schemaOf(t reflect.Type) map[string]field {
	out := map[string]field{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("mapstructure"), ",")
		if slices.Contains(tag[1:], "squash") {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			for k, v := range schemaOf(ft) {
				out[k] = v
			}
			continue
		}
		out[tag[0]] = fieldOf(f.Type)
	}
	return out
}

var fileSchema = schemaOf(reflect.TypeFor[fileSettings]())

// checkStructure parses data, reports every structural problem and returns the document
// without the offending entries, plus the line of every key path it saw
// ("devices[1].schedule.window" → 12).
// ok is false when the file cannot be read as YAML at all.
func checkStructure(data []byte) (clean []byte, lines map[string]int, probs []error, ok bool) {
	lines = map[string]int{}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, lines, []error{&Problem{Key: "(file)", Problem: "not valid YAML: " + err.Error(),
			Fix: "correct the YAML syntax (indent with spaces; quote values that contain ':' or '#')"}}, false
	}
	if len(doc.Content) == 0 {
		return data, lines, nil, true
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		if top.Tag == "!!null" {
			return data, lines, nil, true
		}
		return nil, lines, []error{&Problem{Key: "(top level)", Line: top.Line, Problem: "the file is not a list of key: value settings",
			Fix: "start from the example that `snapback config init` writes"}}, false
	}
	c := &checker{lines: lines}
	c.mapping(top, fileSchema, "")
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return nil, lines, append(c.probs, &Problem{Key: "(file)", Problem: err.Error(), Fix: "compare with the example that `snapback config init` writes"}), false
	}
	return out, lines, c.probs, true
}

type checker struct {
	lines map[string]int
	probs []error
}

func (c *checker) add(line int, key, problem, fix string) {
	c.probs = append(c.probs, &Problem{Key: key, Line: line, Problem: problem, Fix: fix})
}

// mapping checks the pairs of n against schema and removes those that cannot be decoded.
func (c *checker) mapping(n *yaml.Node, schema map[string]field, prefix string) {
	kept := n.Content[:0:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		path := prefix + k.Value
		c.lines[path] = k.Line
		f, known := schema[strings.ToLower(k.Value)] // viper's keys are case-insensitive
		if !known {
			c.add(k.Line, path, "unknown key", unknownKeyFix(k.Value, schema, prefix))
			continue
		}
		if c.value(v, f, path) {
			kept = append(kept, k, v)
		}
	}
	n.Content = kept
}

// value checks one value; false means drop it.
func (c *checker) value(v *yaml.Node, f field, path string) bool {
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return true // "key:" with nothing after it: not set
	}
	switch f.kind {
	case kindMap:
		if v.Kind != yaml.MappingNode {
			c.add(v.Line, path, "is not a group of settings", fmt.Sprintf("indent its keys under %s: (see `snapback config init`)", path))
			return false
		}
		c.mapping(v, f.children, path+".")
	case kindList:
		if v.Kind == yaml.ScalarNode && f.elem.kind != kindMap {
			return c.value(v, *f.elem, path) // one value for a list of values, as the decoder allows
		}
		if v.Kind != yaml.SequenceNode {
			if path == "devices" {
				c.add(v.Line, path, "is not a list", "write one entry per device, each starting with \"- udid: <UDID>\"")
			} else {
				c.add(v.Line, path, "is not a list", fmt.Sprintf("write each entry of %s on its own line starting with \"- \"", path))
			}
			return false
		}
		kept := v.Content[:0:0]
		for i, d := range v.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			c.lines[p] = d.Line
			if f.elem.kind != kindMap {
				if c.value(d, *f.elem, p) {
					kept = append(kept, d)
				}
				continue
			}
			if d.Kind != yaml.MappingNode {
				c.add(d.Line, p, "is not an entry of keys", "write \"- key: value\" followed by the entry's other keys")
				// Keep the list's indices stable for the value checks: an empty entry is
				// reported there (a device without its UDID, say).
				kept = append(kept, &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"})
				continue
			}
			c.mapping(d, f.elem.children, p+".")
			if path == "devices" {
				for j := 0; j+1 < len(d.Content); j += 2 {
					if d.Content[j].Value == "udid" {
						if problem, fix := CheckUDID(d.Content[j+1].Value); problem != "" {
							c.add(d.Content[j+1].Line, p+".udid", problem, fix)
						}
					}
				}
			}
			kept = append(kept, d)
		}
		v.Content = kept
	case kindBool:
		if _, err := strconv.ParseBool(v.Value); v.Kind != yaml.ScalarNode || err != nil {
			c.add(v.Line, path, fmt.Sprintf("%s is not true or false", describe(v)), "write true or false")
			return false
		}
	case kindInt:
		if _, err := strconv.Atoi(v.Value); v.Kind != yaml.ScalarNode || err != nil {
			c.add(v.Line, path, fmt.Sprintf("%s is not a whole number", describe(v)), "write a whole number such as 3")
			return false
		}
	case kindString:
		if v.Kind != yaml.ScalarNode {
			c.add(v.Line, path, fmt.Sprintf("%s is not a single value", describe(v)), "write one value on the key's line")
			return false
		}
	}
	return true
}

func describe(v *yaml.Node) string {
	switch v.Kind {
	case yaml.MappingNode:
		return "a group of keys"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(v.Value)
}

// unknownKeyFix suggests the nearest key at the same level, or the place where the key
// belongs when it is valid elsewhere ("window" at the top level is schedule.window).
func unknownKeyFix(key string, schema map[string]field, prefix string) string {
	names := make([]string, 0, len(schema))
	for k := range schema {
		names = append(names, k)
	}
	slices.Sort(names)
	best, bestD := "", 1<<30
	for _, k := range names {
		if d := editDistance(strings.ToLower(key), k); d < bestD {
			best, bestD = k, d
		}
	}
	if bestD <= max(1, len(key)/3) {
		return fmt.Sprintf("did you mean %s%s?", prefix, best)
	}
	for _, k := range Keys() {
		if k[strings.LastIndex(k, ".")+1:] == key {
			return fmt.Sprintf("%s belongs under %s (write it as %s)", key, k[:max(0, strings.LastIndex(k, "."))]+":", k)
		}
	}
	return "remove it, or use one of: " + strings.Join(names, ", ")
}

// editDistance is the optimal-string-alignment distance: insertions, deletions,
// substitutions and swaps of neighbours each cost 1, so "transprot" is 1 from "transport".
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

var (
	udidModern = regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{16}$`)
	udidLegacy = regexp.MustCompile(`^[0-9a-fA-F]{40}$`)
)

// CheckUDID says what is wrong with a UDID as written in the settings, and how to fix it;
// empty when it is well-formed. Devices since the iPhone XS report 0000XXXX-XXXXXXXXXXXXXXXX
// in upper case; older ones 40 hex digits.
func CheckUDID(u string) (problem, fix string) {
	const how = "copy it from `snapback devices`: 8 hex digits, '-', 16 hex digits (e.g. 00008110-001A2B3C4D5E802E), or 40 hex digits on devices older than the iPhone XS"
	switch {
	case udidModern.MatchString(u), udidLegacy.MatchString(u):
		return "", ""
	case udidModern.MatchString(strings.ToUpper(u)):
		return fmt.Sprintf("%q has lower-case letters; devices report their UDID in upper case", u),
			fmt.Sprintf("write it as %s", strings.ToUpper(u))
	case strings.TrimSpace(u) != u:
		return fmt.Sprintf("%q has spaces around it", u), "remove the spaces"
	}
	if i := strings.IndexFunc(u, func(r rune) bool { return !strings.ContainsRune("0123456789abcdefABCDEF-", r) }); i >= 0 {
		return fmt.Sprintf("%q is not a UDID: %q is not a hex digit", u, u[i:i+1]), how
	}
	return fmt.Sprintf("%q is not a UDID (%d characters; a UDID has 25 or 40)", u, len(u)), how
}

// sortProblems orders problems by line, those without a line (environment) last, and fills
// in the line of value problems from the structural pass.
func sortProblems(errs []error, lines map[string]int) []error {
	var flat []error
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		if p, ok := e.(*Problem); ok && p.Line == 0 {
			p.Line = lineOf(p.Key, lines)
		}
		flat = append(flat, e)
	}
	for _, e := range errs {
		walk(e)
	}
	line := func(e error) int {
		var p *Problem
		if errors.As(e, &p) && p.Line > 0 {
			return p.Line
		}
		return 1 << 30
	}
	slices.SortStableFunc(flat, func(a, b error) int { return cmp.Compare(line(a), line(b)) })
	return flat
}

// lineOf finds the line of key, or of its nearest parent that has one.
func lineOf(key string, lines map[string]int) int {
	for k := key; k != ""; {
		if l, ok := lines[k]; ok {
			return l
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}
