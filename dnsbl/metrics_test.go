package dnsbl

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/greymilter/greymilter/dnstest"
	"github.com/greymilter/greymilter/resolver"
)

// TestMetricsPerZone checks each kind of outcome against a real DNS
// server: a listing, a server failure, a list too slow for the deadline, a
// refusal; then the same check again, from the cache where it can be.
func TestMetricsPerZone(t *testing.T) {
	srv := dnstest.Start(t, blZones...)
	r, _ := newResolver(t, resolver.Config{}, srv.Addr())
	// Policy all with no clean answer: no outcome is certain before every
	// zone has answered or failed, so every lookup finishes and counts.
	l := NewList(r, All, nil, mustZones(t, "a.bl.test", "fail.bl.test", "slow.bl.test", "pub.bl.test")...)
	m := NewMetrics()
	l.Instrument(m)
	addr := netip.MustParseAddr("192.0.2.2")
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		res := l.Check(ctx, addr)
		cancel()
		if !res.Listed || len(res.Abstained) != 3 {
			t.Fatalf("check: %+v", res)
		}
	}
	want := `
# HELP greymilter_dnslist_abstentions_total Lookups without a usable answer, by reason: timeout, refused (the list answered a refusal code, 127.255.255.x), error (server failure, network).
# TYPE greymilter_dnslist_abstentions_total counter
greymilter_dnslist_abstentions_total{list="dnsbl",reason="error",zone="a.bl.test"} 0
greymilter_dnslist_abstentions_total{list="dnsbl",reason="error",zone="fail.bl.test"} 2
greymilter_dnslist_abstentions_total{list="dnsbl",reason="error",zone="pub.bl.test"} 0
greymilter_dnslist_abstentions_total{list="dnsbl",reason="error",zone="slow.bl.test"} 0
greymilter_dnslist_abstentions_total{list="dnsbl",reason="refused",zone="a.bl.test"} 0
greymilter_dnslist_abstentions_total{list="dnsbl",reason="refused",zone="fail.bl.test"} 0
greymilter_dnslist_abstentions_total{list="dnsbl",reason="refused",zone="pub.bl.test"} 2
greymilter_dnslist_abstentions_total{list="dnsbl",reason="refused",zone="slow.bl.test"} 0
greymilter_dnslist_abstentions_total{list="dnsbl",reason="timeout",zone="a.bl.test"} 0
greymilter_dnslist_abstentions_total{list="dnsbl",reason="timeout",zone="fail.bl.test"} 0
greymilter_dnslist_abstentions_total{list="dnsbl",reason="timeout",zone="pub.bl.test"} 0
greymilter_dnslist_abstentions_total{list="dnsbl",reason="timeout",zone="slow.bl.test"} 2
# HELP greymilter_dnslist_hits_total Lookups in which the DNS list listed the client (with an answer its filter counts).
# TYPE greymilter_dnslist_hits_total counter
greymilter_dnslist_hits_total{list="dnsbl",zone="a.bl.test"} 2
greymilter_dnslist_hits_total{list="dnsbl",zone="fail.bl.test"} 0
greymilter_dnslist_hits_total{list="dnsbl",zone="pub.bl.test"} 0
greymilter_dnslist_hits_total{list="dnsbl",zone="slow.bl.test"} 0
# HELP greymilter_dnslist_queries_total Lookups of a client in a DNS list that finished, answered from the cache or by the servers; lookups cut short because the outcome was certain are not counted.
# TYPE greymilter_dnslist_queries_total counter
greymilter_dnslist_queries_total{list="dnsbl",zone="a.bl.test"} 2
greymilter_dnslist_queries_total{list="dnsbl",zone="fail.bl.test"} 2
greymilter_dnslist_queries_total{list="dnsbl",zone="pub.bl.test"} 2
greymilter_dnslist_queries_total{list="dnsbl",zone="slow.bl.test"} 2
`
	if err := testutil.CollectAndCompare(m, strings.NewReader(want), "greymilter_dnslist_queries_total", "greymilter_dnslist_hits_total", "greymilter_dnslist_abstentions_total"); err != nil {
		t.Error(err)
	}
	// The second check found the listing in the cache: only the servers'
	// answers are timed, the slow list's timeouts too.
	out, err := testutil.CollectAndFormat(m, expfmt.TypeTextPlain, "greymilter_dnslist_query_seconds")
	if err != nil {
		t.Fatal(err)
	}
	for zone, n := range map[string]int{"a.bl.test": 1, "slow.bl.test": 2} {
		if want := fmt.Sprintf("greymilter_dnslist_query_seconds_count{list=\"dnsbl\",zone=%q} %d\n", zone, n); !strings.Contains(string(out), want) {
			t.Errorf("latency lacks %q:\n%s", want, out)
		}
	}
}
