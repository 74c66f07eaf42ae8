// This file exists so the simulated hosts see what a real iSCSI target masks to their IQN:
// it runs libiscsi's command-line tools (iscsi-ls, iscsi-inq, iscsi-readcapacity16) as the
// host's initiator and parses their output into LUNs with the target's own NAA identifiers.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// iscsiTools are the libiscsi programs used for discovery, with a per-command timeout.
type iscsiTools struct {
	ls, inq, readcap string
	timeout          time.Duration
}

// discoveredLun is one SCSI disk reachable through one target of one portal.
type discoveredLun struct {
	portal    string // "address:port" of the send target (or static target) used
	target    string // target IQN
	number    int    // LUN number
	canonical string // naa.<hex>, t10.<id> or mpx.<path>
	id        string // hex identifier used to build the ScsiLun uuid
	vendor    string
	model     string
	revision  string
	serial    string
	blockSize int64
	blocks    int64
	state     string // "ok" or "lostCommunication" (portal unreachable at the last rescan)
}

func (t *iscsiTools) run(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), t.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// discoverPatience bounds the retries of a listing that keeps meeting unit attentions.
const discoverPatience = 5 * time.Second

// luChanging tells a listing that met LUs being added or removed (a unit attention, or a
// LUN that vanished between REPORT LUNS and its TEST UNIT READY or READ CAPACITY) from a
// portal that is down.
func luChanging(err error) bool {
	text := err.Error()
	for _, sign := range []string{"UNIT_ATTENTION", "TESTUNITREADY", "readcapacity", "LOGICAL_UNIT_NOT_SUPPORTED"} {
		if strings.Contains(text, sign) {
			return true
		}
	}
	return false
}

// targetLuns is what iscsi-ls reports for one target: its name and its disk LUN numbers.
type targetLuns struct {
	name string
	luns []int
}

// discover lists the targets and disk LUNs that `portal` shows to initiator `iqn`.
// Lines look like "Target:iqn... Portal:127.0.0.1:3260,1" and "Lun:1    Type:DIRECT_ACCESS (Size:63M)";
// LUN 0 of tgt (Type:STORAGE_ARRAY_CONTROLLER) and any other non-disk type is skipped.
//
// Listing the LUNs (-s) costs a TEST UNIT READY and a READ CAPACITY per LUN, and either fails
// while the target adds or removes LUs (UNIT ATTENTION "reported LUNs data has changed", or
// the LU gone meanwhile), which would make the whole portal look unreachable. ESXi retries a
// command that met a unit attention; here the listing is tried again (every 200 ms, for up to
// discoverPatience: while many LUs are mapped at once, every listing of a large target meets
// one) before the rescan keeps the portal's old paths as dead ones. A portal that cannot be
// reached (no login) gets three tries, as before: a dead target must not hold a rescan up.
func (t *iscsiTools) discover(iqn, portal string) ([]targetLuns, error) {
	var out []byte
	var err error
	deadline := time.Now().Add(discoverPatience)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		out, err = t.run(t.ls, "-s", "-i", iqn, "iscsi://"+portal+"/")
		if err == nil || time.Now().After(deadline) || (attempt >= 2 && !luChanging(err)) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	var targets []targetLuns
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "Target:"):
			name := strings.Fields(strings.TrimPrefix(line, "Target:"))[0]
			targets = append(targets, targetLuns{name: name})
		case strings.HasPrefix(line, "Lun:") && len(targets) > 0:
			fields := strings.Fields(strings.TrimPrefix(line, "Lun:"))
			if len(fields) < 2 || fields[1] != "Type:DIRECT_ACCESS" {
				continue
			}
			n, err := strconv.Atoi(fields[0])
			if err != nil {
				continue
			}
			last := &targets[len(targets)-1]
			last.luns = append(last.luns, n)
		}
	}
	return targets, nil
}

// probe reads the identity (VPD page 0x83), the standard INQUIRY and the capacity of one LUN.
func (t *iscsiTools) probe(iqn, portal, target string, number int) (*discoveredLun, error) {
	url := fmt.Sprintf("iscsi://%s/%s/%d", portal, target, number)
	l := &discoveredLun{portal: portal, target: target, number: number, state: "ok", blockSize: 512}
	page83, err := t.run(t.inq, "-i", iqn, "--evpd=1", "--pagecode=131", url)
	if err != nil {
		return nil, err
	}
	l.canonical, l.id = identify(page83)
	if l.canonical == "" {
		l.canonical = fmt.Sprintf("mpx.vmhba64:C0:T0:L%d", number)
		l.id = hex.EncodeToString([]byte(target + "/" + strconv.Itoa(number)))
	}
	if std, err := t.run(t.inq, "-i", iqn, url); err == nil {
		l.vendor = strings.TrimSpace(field(std, "Vendor:"))
		l.model = strings.TrimSpace(field(std, "Product:"))
		l.revision = strings.TrimSpace(field(std, "Revision:"))
	}
	if sn, err := t.run(t.inq, "-i", iqn, "--evpd=1", "--pagecode=128", url); err == nil {
		l.serial = strings.Trim(field(sn, "Unit Serial Number:"), "[] ")
	}
	if t.readcap != "" {
		if rc, err := t.run(t.readcap, "-i", iqn, url); err == nil {
			bs, _ := strconv.ParseInt(field(rc, "LOGICAL BLOCK LENGTH IN BYTES:"), 10, 64)
			lba, _ := strconv.ParseInt(field(rc, "RETURNED LOGICAL BLOCK ADDRESS:"), 10, 64)
			if bs > 0 {
				l.blockSize, l.blocks = bs, lba+1
			}
		}
	}
	return l, nil
}

// field returns the rest of the first line that starts with prefix.
func field(out []byte, prefix string) string {
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, prefix) {
			return strings.TrimSpace(strings.TrimPrefix(line, prefix))
		}
	}
	return ""
}

// designator is one identification descriptor of VPD page 0x83 as iscsi-inq prints it.
type designator struct {
	kind  string // "NAA", "T10_VENDORT_ID", ...
	assoc string // "LOGICAL_UNIT", ...
	raw   []byte
}

// identify returns the ESXi-style canonical name and hex id of a LUN from iscsi-inq page 0x83.
//
// iscsi-inq 1.19 prints binary designators raw with printf("%s"): the bytes stop at the first
// NUL and may contain newlines. An NAA designator's length follows from its first nibble
// (6 → 16 bytes, else 8); when fewer bytes came out, the value was cut at a zero byte and is
// rebuilt from the ASCII T10 designator if that one spells the same hex (tgt puts scsi_id
// there). A LUN without a usable NAA gets a t10.<vendor id> name, as on ESXi.
func identify(out []byte) (canonical, id string) {
	ds := parseDesignators(out)
	var t10 string
	for _, d := range ds {
		if d.kind == "T10_VENDORT_ID" && t10 == "" {
			t10 = string(d.raw)
		}
	}
	for _, d := range ds {
		if d.kind != "NAA" || d.assoc != "LOGICAL_UNIT" || len(d.raw) == 0 {
			continue
		}
		want := 8
		if d.raw[0]>>4 == 6 {
			want = 16
		}
		if len(d.raw) >= want {
			h := hex.EncodeToString(d.raw[:want])
			return "naa." + h, h
		}
		if h := rebuildFromT10(d.raw, want, t10); h != "" {
			return "naa." + h, h
		}
	}
	if t10 != "" {
		name := strings.ReplaceAll(strings.TrimRight(t10, " \x00"), " ", "_")
		return "t10." + name, hex.EncodeToString([]byte(name))
	}
	return "", ""
}

// rebuildFromT10 completes an NAA value cut at a zero byte from a hex T10 vendor id.
func rebuildFromT10(prefix []byte, want int, t10 string) string {
	fields := strings.Fields(t10)
	for _, cand := range append(fields, strings.Join(fields, "")) {
		full, err := hex.DecodeString(cand)
		if err != nil || len(full) != want {
			continue
		}
		if bytes.HasPrefix(full, prefix) && full[len(prefix)] == 0 {
			return strings.ToLower(cand)
		}
	}
	return ""
}

// parseDesignators splits iscsi-inq's page 0x83 output into designators, keeping raw bytes.
func parseDesignators(out []byte) []designator {
	var ds []designator
	chunks := bytes.Split(out, []byte("DEVICE DESIGNATOR #"))
	for _, c := range chunks[1:] {
		d := designator{
			kind:  headerValue(c, "Designator Type:"),
			assoc: headerValue(c, "Association:"),
		}
		start := bytes.Index(c, []byte("\nDesignator:["))
		end := bytes.LastIndex(c, []byte("]"))
		if start < 0 || end < start {
			continue
		}
		d.raw = c[start+len("\nDesignator:[") : end]
		ds = append(ds, d)
	}
	return ds
}

// headerValue returns "NAA" from a line "Designator Type:(3) NAA" (the word after the code).
func headerValue(chunk []byte, prefix string) string {
	i := bytes.Index(chunk, []byte(prefix))
	if i < 0 {
		return ""
	}
	line := chunk[i+len(prefix):]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	f := strings.Fields(string(line))
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1]
}
