package dnsbl

import (
	"fmt"
	"strconv"
	"strings"
)

// Policy decides from the zones that answered whether an address is
// listed. Zones that abstained (failed, timed out) are not counted.
type Policy struct {
	kind policyKind
	n    int // hits needed for a threshold policy
}

type policyKind int

const (
	policyAny policyKind = iota
	policyAll
	policyMajority
	policyThreshold
)

// The policies of --policy.
var (
	// Any lists an address that one zone lists.
	Any = Policy{kind: policyAny}
	// All lists an address that every zone that answered lists.
	All = Policy{kind: policyAll}
	// Majority lists an address that more than half of the zones that
	// answered list.
	Majority = Policy{kind: policyMajority}
)

// Threshold lists an address that at least n zones list
// (--dnsbl-threshold, --dnswl-threshold).
func Threshold(n int) Policy { return Policy{kind: policyThreshold, n: max(n, 1)} }

// ParsePolicy parses "any", "all", "majority", or a number (a threshold).
func ParsePolicy(s string) (Policy, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "any":
		return Any, nil
	case "all":
		return All, nil
	case "majority":
		return Majority, nil
	}
	if n, err := strconv.Atoi(s); err == nil && n >= 1 {
		return Threshold(n), nil
	}
	return Policy{}, fmt.Errorf("dnsbl: policy %q: want any, all, majority or a number of hits", s)
}

func (p Policy) String() string {
	switch p.kind {
	case policyAll:
		return "all"
	case policyMajority:
		return "majority"
	case policyThreshold:
		return "threshold " + strconv.Itoa(p.n)
	}
	return "any"
}

// listed decides from hits (zones that list) and clean (zones that
// answered without listing).
func (p Policy) listed(hits, clean int) bool {
	switch p.kind {
	case policyAll:
		return hits > 0 && clean == 0
	case policyMajority:
		return hits > clean
	case policyThreshold:
		return hits >= p.n
	}
	return hits > 0
}

// settled tells whether the outcome is the same whatever the pending zones
// answer (listed, clean or abstaining), and what it is. Lists are few, so
// trying every split of the pending zones is cheap and obviously right.
func (p Policy) settled(hits, clean, pending int) (listed, certain bool) {
	listed = p.listed(hits, clean)
	for h := 0; h <= pending; h++ {
		for c := 0; h+c <= pending; c++ {
			if p.listed(hits+h, clean+c) != listed {
				return listed, false
			}
		}
	}
	return listed, true
}
