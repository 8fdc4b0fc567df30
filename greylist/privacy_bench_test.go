package greylist

import "testing"

// BenchmarkPrivacyKey is what --privacy adds to every store access.
func BenchmarkPrivacyKey(b *testing.B) {
	p, _ := NewPrivacy([]byte(NewSecret()))
	k := Key{Client: "192.0.2.0/24", Sender: "alice@example.org", Recipient: "bob@example.net"}
	b.ReportAllocs()
	for b.Loop() {
		p.Key(k)
	}
}
