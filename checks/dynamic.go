package checks

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Dynamic scores a client whose name looks like an end-user line:
// Scores.Dynamic when p (nil: DefaultPatterns) says so, 0 otherwise or
// without a name.
func Dynamic(in Input, p *Patterns, s Scores) Result {
	name := normalizeName(in.Name)
	if name == "" {
		return Result{Check: "dynamic", Reason: "no-name"}
	}
	if p == nil {
		p = DefaultPatterns()
	}
	dyn, why := p.Match(name, in.Addr)
	r := Result{Check: "dynamic", Reason: why}
	if dyn {
		r.Score = s.Dynamic
	}
	return r
}

// Match reports whether name, the reverse name of addr, looks dynamic, and
// why: "static:WORD", "address:FORM", "word:WORD", "regexp:EXPR", or "clean".
// Static patterns win over everything else.
func (p *Patterns) Match(name string, addr netip.Addr) (dynamic bool, why string) {
	name = normalizeName(name)
	ws := splitWords(name)
	for _, w := range ws {
		if p.staticWords[w] {
			return false, "static:" + w
		}
	}
	for _, re := range p.staticRes {
		if re.MatchString(name) {
			return false, "static:/" + strings.TrimPrefix(re.String(), "(?i)") + "/"
		}
	}
	if form := embeddedAddress(name, ws, addr); form != "" {
		return true, "address:" + form
	}
	for _, w := range ws {
		if p.dynamicWords[w] {
			return true, "word:" + w
		}
	}
	for _, re := range p.dynamicRes {
		if re.MatchString(name) {
			return true, "regexp:/" + strings.TrimPrefix(re.String(), "(?i)") + "/"
		}
	}
	return false, "clean"
}

// splitWords cuts a lowercase name into runs of letters and runs of digits.
func splitWords(name string) []string {
	var out []string
	start := -1
	kind := byte(0) // 'a' letters, '0' digits
	for i := 0; i <= len(name); i++ {
		k := byte(0)
		if i < len(name) {
			switch c := name[i]; {
			case c >= 'a' && c <= 'z':
				k = 'a'
			case c >= '0' && c <= '9':
				k = '0'
			}
		}
		if k != kind {
			if kind != 0 {
				out = append(out, name[start:i])
			}
			start, kind = i, k
		}
	}
	return out
}

// embeddedAddress returns the form in which name holds addr ("dotted",
// "reversed", "padded", "hex", "number", "partial"...), or "".
func embeddedAddress(name string, ws []string, addr netip.Addr) string {
	addr = addr.Unmap()
	switch {
	case addr.Is4():
		return embeddedIPv4(name, ws, addr.As4())
	case addr.Is6():
		return embeddedIPv6(name, addr)
	}
	return ""
}

func embeddedIPv4(name string, ws []string, o [4]byte) string {
	// Octets as consecutive number words, whatever separates them.
	var nums []int
	flush := func() string {
		defer func() { nums = nums[:0] }()
		switch {
		case hasRun(nums, int(o[0]), int(o[1]), int(o[2]), int(o[3])):
			return "octets"
		case hasRun(nums, int(o[3]), int(o[2]), int(o[1]), int(o[0])):
			return "reversed"
		case hasRun(nums, int(o[1]), int(o[2]), int(o[3])), hasRun(nums, int(o[3]), int(o[2]), int(o[1])):
			return "partial"
		}
		return ""
	}
	for _, w := range ws {
		n, err := strconv.Atoi(w)
		if err != nil || len(w) > 3 || n > 255 {
			if form := flush(); form != "" {
				return form
			}
			continue
		}
		nums = append(nums, n)
	}
	if form := flush(); form != "" {
		return form
	}
	padded := fmt.Sprintf("%03d%03d%03d%03d", o[0], o[1], o[2], o[3])
	reversed := fmt.Sprintf("%03d%03d%03d%03d", o[3], o[2], o[1], o[0])
	if strings.Contains(name, padded) || strings.Contains(name, reversed) {
		return "padded"
	}
	if strings.Contains(name, hex.EncodeToString(o[:])) {
		return "hex"
	}
	number := strconv.FormatUint(uint64(o[0])<<24|uint64(o[1])<<16|uint64(o[2])<<8|uint64(o[3]), 10)
	for _, w := range ws {
		if w == number {
			return "number"
		}
	}
	return ""
}

// hasRun reports whether seq appears in nums as consecutive elements.
func hasRun(nums []int, seq ...int) bool {
	for i := 0; i+len(seq) <= len(nums); i++ {
		match := true
		for j, v := range seq {
			if nums[i+j] != v {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

func embeddedIPv6(name string, addr netip.Addr) string {
	if strings.Contains(name, strings.ReplaceAll(addr.String(), ":", "-")) {
		return "dashed"
	}
	b := addr.As16()
	full := hex.EncodeToString(b[:])
	squeezed := strings.Map(func(r rune) rune {
		if r == '.' || r == '-' || r == '_' || r == ':' {
			return -1
		}
		return r
	}, name)
	if strings.Contains(squeezed, full) || strings.Contains(squeezed, full[16:]) {
		return "hex"
	}
	return ""
}
