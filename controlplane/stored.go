package controlplane

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// This file reads resources as stores keep them: the API's JSON, written
// with the status of its write, whose status is the resource's SyncState's
// as of the read (SyncState.At). Every store reads through these, so a
// status reads the same whichever store holds it.

var statusField = []byte(`,"status":"`)

// SpliceStatus returns the stored JSON of a group or prefix list with its
// status replaced by st, without decoding it. A JSON string cannot contain
// an unescaped quote, so the first `,"status":"` is the top-level field (it
// follows id, name and description, which the encoder writes first).
func SpliceStatus(raw []byte, st Status) []byte {
	i := bytes.Index(raw, statusField)
	if i < 0 {
		return slices.Clone(raw)
	}
	start := i + len(statusField)
	end := bytes.IndexByte(raw[start:], '"')
	if end < 0 {
		return slices.Clone(raw)
	}
	out := make([]byte, 0, len(raw)+8)
	out = append(out, raw[:start]...)
	out = append(out, st...)
	return append(out, raw[start+end:]...)
}

// DecodeSecurityGroup decodes a stored group of org and sets its status
// from sync at now.
func DecodeSecurityGroup(raw []byte, org string, sync SyncState, now time.Time) (SecurityGroup, error) {
	var g SecurityGroup
	if err := json.Unmarshal(raw, &g); err != nil {
		return g, fmt.Errorf("decode security group: %w", err)
	}
	g.OrgID = org
	g.Sync = sync.At(now)
	g.Status = g.Sync.Status
	if g.Sites == nil {
		g.Sites = []string{}
	}
	if g.Rules == nil {
		g.Rules = []FilterRule{}
	}
	return g, nil
}

// DecodePrefixList decodes a stored prefix list of org and sets its status
// from sync at now.
func DecodePrefixList(raw []byte, org string, sync SyncState, now time.Time) (PrefixList, error) {
	var l PrefixList
	if err := json.Unmarshal(raw, &l); err != nil {
		return l, fmt.Errorf("decode prefix list: %w", err)
	}
	l.OrgID = org
	l.Sync = sync.At(now)
	l.Status = l.Sync.Status
	if l.Sites == nil {
		l.Sites = []string{}
	}
	if l.Prefixes == nil {
		l.Prefixes = []Prefix{}
	}
	return l, nil
}
