// This file exists because the stock simulator's HostStorageSystem shares one fixed device
// list between all hosts and swaps HBA lists on RescanAllHba. storageSystem replaces it per
// host: it keeps the software iSCSI adapter's name and targets, and a rescan lists exactly
// the LUNs the real iSCSI target shows to this host's IQN.
package main

import (
	"fmt"
	"log"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	iscsiDevice = "vmhba64"
	defaultPort = 3260
)

// storageSystem is one host's HostStorageSystem. The embedded stock object keeps the managed
// object reference and the methods not overridden here (RescanVmfs, RefreshStorageSystem).
type storageSystem struct {
	*simulator.HostStorageSystem

	host  *simulator.HostSystem
	index int // 1-based, from the sorted host names; seeds the WWPNs
	tools *iscsiTools

	mu            sync.Mutex // guards the fields below (read by the RDM check without registry locks)
	iqn           string
	sendTargets   []types.HostInternetScsiHbaSendTarget
	staticTargets []types.HostInternetScsiHbaStaticTarget // added by the user (staticMethod)
	discovered    []types.HostInternetScsiHbaStaticTarget // found through send targets
	luns          []*discoveredLun                        // paths found by the last rescan
}

func newStorageSystem(stock *simulator.HostStorageSystem, host *simulator.HostSystem, index int, tools *iscsiTools) *storageSystem {
	return &storageSystem{
		HostStorageSystem: stock,
		host:              host,
		index:             index,
		tools:             tools,
		iqn:               defaultIQN(host.Name),
	}
}

func fault(msg string, f types.BaseMethodFault) *soap.Fault { return simulator.Fault(msg, f) }

// notConnected is vCenter's answer to a storage call on a host it lost (disconnected or not
// responding): HostNotConnected, so a client sees one host of a cluster fail, not all of them.
func (s *storageSystem) notConnected() *soap.Fault {
	state := s.host.Runtime.ConnectionState
	if state == "" || state == types.HostSystemConnectionStateConnected {
		return nil
	}
	return fault(fmt.Sprintf("host %s is %s", s.host.Name, state), &types.HostNotConnected{})
}

func (s *storageSystem) checkISCSI(device string) *soap.Fault {
	if f := s.notConnected(); f != nil {
		return f
	}
	if device != iscsiDevice {
		return fault(fmt.Sprintf("no iSCSI adapter %q on %s", device, s.host.Name), &types.NotFound{})
	}
	return nil
}

// RescanAllHba rescans the software iSCSI adapter (the FC adapters have no fabric here).
func (s *storageSystem) RescanAllHba(ctx *simulator.Context, _ *types.RescanAllHba) soap.HasFault {
	if f := s.notConnected(); f != nil {
		return &methods.RescanAllHbaBody{Fault_: f}
	}
	s.rescan(ctx)
	return &methods.RescanAllHbaBody{Res: new(types.RescanAllHbaResponse)}
}

// RescanHba rescans one adapter; unknown adapters fail with NotFound like on ESXi.
func (s *storageSystem) RescanHba(ctx *simulator.Context, req *types.RescanHba) soap.HasFault {
	body := &methods.RescanHbaBody{}
	if body.Fault_ = s.notConnected(); body.Fault_ != nil {
		return body
	}
	switch req.HbaDevice {
	case iscsiDevice:
		s.rescan(ctx)
	case "vmhba0", "vmhba1", "vmhba2":
	default:
		body.Fault_ = fault("no adapter "+req.HbaDevice, &types.NotFound{})
		return body
	}
	body.Res = new(types.RescanHbaResponse)
	return body
}

func (s *storageSystem) UpdateInternetScsiName(ctx *simulator.Context, req *types.UpdateInternetScsiName) soap.HasFault {
	body := &methods.UpdateInternetScsiNameBody{}
	if body.Fault_ = s.checkISCSI(req.IScsiHbaDevice); body.Fault_ != nil {
		return body
	}
	name := strings.TrimSpace(req.IScsiName)
	if !strings.HasPrefix(name, "iqn.") && !strings.HasPrefix(name, "eui.") {
		body.Fault_ = fault("not an iSCSI name: "+req.IScsiName, &types.InvalidArgument{InvalidProperty: "iScsiName"})
		return body
	}
	s.mu.Lock()
	s.iqn = name
	s.mu.Unlock()
	s.publish(ctx)
	body.Res = new(types.UpdateInternetScsiNameResponse)
	return body
}

func portalKey(address string, port int32) string {
	if port == 0 {
		port = defaultPort
	}
	return net.JoinHostPort(address, strconv.Itoa(int(port)))
}

func (s *storageSystem) AddInternetScsiSendTargets(ctx *simulator.Context, req *types.AddInternetScsiSendTargets) soap.HasFault {
	body := &methods.AddInternetScsiSendTargetsBody{}
	if body.Fault_ = s.checkISCSI(req.IScsiHbaDevice); body.Fault_ != nil {
		return body
	}
	s.mu.Lock()
	for _, t := range req.Targets {
		if t.Port == 0 {
			t.Port = defaultPort
		}
		if !s.hasSendTarget(t) {
			s.sendTargets = append(s.sendTargets, types.HostInternetScsiHbaSendTarget{Address: t.Address, Port: t.Port})
		}
	}
	s.mu.Unlock()
	s.publish(ctx)
	body.Res = new(types.AddInternetScsiSendTargetsResponse)
	return body
}

func (s *storageSystem) hasSendTarget(t types.HostInternetScsiHbaSendTarget) bool {
	for _, have := range s.sendTargets {
		if portalKey(have.Address, have.Port) == portalKey(t.Address, t.Port) {
			return true
		}
	}
	return false
}

func (s *storageSystem) RemoveInternetScsiSendTargets(ctx *simulator.Context, req *types.RemoveInternetScsiSendTargets) soap.HasFault {
	body := &methods.RemoveInternetScsiSendTargetsBody{}
	if body.Fault_ = s.checkISCSI(req.IScsiHbaDevice); body.Fault_ != nil {
		return body
	}
	drop := map[string]bool{}
	for _, t := range req.Targets {
		drop[portalKey(t.Address, t.Port)] = true
	}
	s.mu.Lock()
	var keep []types.HostInternetScsiHbaSendTarget
	for _, t := range s.sendTargets {
		if !drop[portalKey(t.Address, t.Port)] {
			keep = append(keep, t)
		}
	}
	s.sendTargets = keep
	var disc []types.HostInternetScsiHbaStaticTarget
	for _, t := range s.discovered { // ESXi forgets the targets found through a removed portal
		if !drop[t.Parent] {
			disc = append(disc, t)
		}
	}
	s.discovered = disc
	s.mu.Unlock()
	s.publish(ctx)
	body.Res = new(types.RemoveInternetScsiSendTargetsResponse)
	return body
}

func (s *storageSystem) AddInternetScsiStaticTargets(ctx *simulator.Context, req *types.AddInternetScsiStaticTargets) soap.HasFault {
	body := &methods.AddInternetScsiStaticTargetsBody{}
	if body.Fault_ = s.checkISCSI(req.IScsiHbaDevice); body.Fault_ != nil {
		return body
	}
	s.mu.Lock()
	for _, t := range req.Targets {
		if t.Port == 0 {
			t.Port = defaultPort
		}
		if s.staticIndex(t) < 0 {
			s.staticTargets = append(s.staticTargets, types.HostInternetScsiHbaStaticTarget{
				Address: t.Address, Port: t.Port, IScsiName: t.IScsiName, DiscoveryMethod: "staticMethod",
			})
		}
	}
	s.mu.Unlock()
	s.publish(ctx)
	body.Res = new(types.AddInternetScsiStaticTargetsResponse)
	return body
}

func (s *storageSystem) staticIndex(t types.HostInternetScsiHbaStaticTarget) int {
	for i, have := range s.staticTargets {
		if have.IScsiName == t.IScsiName && portalKey(have.Address, have.Port) == portalKey(t.Address, t.Port) {
			return i
		}
	}
	return -1
}

func (s *storageSystem) RemoveInternetScsiStaticTargets(ctx *simulator.Context, req *types.RemoveInternetScsiStaticTargets) soap.HasFault {
	body := &methods.RemoveInternetScsiStaticTargetsBody{}
	if body.Fault_ = s.checkISCSI(req.IScsiHbaDevice); body.Fault_ != nil {
		return body
	}
	s.mu.Lock()
	for _, t := range req.Targets {
		if i := s.staticIndex(t); i >= 0 {
			s.staticTargets = append(s.staticTargets[:i:i], s.staticTargets[i+1:]...)
		}
	}
	s.mu.Unlock()
	s.publish(ctx)
	body.Res = new(types.RemoveInternetScsiStaticTargetsResponse)
	return body
}

// UpdateSoftwareInternetScsiEnabled is accepted; the software adapter always exists here.
func (s *storageSystem) UpdateSoftwareInternetScsiEnabled(ctx *simulator.Context, _ *types.UpdateSoftwareInternetScsiEnabled) soap.HasFault {
	return &methods.UpdateSoftwareInternetScsiEnabledBody{Res: new(types.UpdateSoftwareInternetScsiEnabledResponse)}
}

// rescan asks every send target (with this host's IQN) which targets and LUNs it shows,
// probes each LUN and replaces the device list. A portal that cannot be reached is logged;
// the LUNs last seen through it stay listed as "lostCommunication", as ESXi keeps dead paths.
func (s *storageSystem) rescan(ctx *simulator.Context) {
	s.mu.Lock()
	iqn := s.iqn
	sendTargets := append([]types.HostInternetScsiHbaSendTarget(nil), s.sendTargets...)
	statics := append([]types.HostInternetScsiHbaStaticTarget(nil), s.staticTargets...)
	previous := s.luns
	s.mu.Unlock()

	var luns []*discoveredLun
	var discovered []types.HostInternetScsiHbaStaticTarget
	keepOld := func(portal, target string) {
		for _, l := range previous {
			if l.portal == portal && (target == "" || l.target == target) {
				old := *l
				old.state = "lostCommunication"
				luns = append(luns, &old)
			}
		}
	}
	scan := func(portal, only string) []targetLuns {
		targets, err := s.tools.discover(iqn, portal)
		if err != nil {
			log.Printf("%s: discovery of %s as %s failed: %v", s.host.Name, portal, iqn, err)
			keepOld(portal, only)
			return nil
		}
		for _, t := range targets {
			if only != "" && t.name != only {
				continue
			}
			for _, n := range t.luns {
				l, err := s.tools.probe(iqn, portal, t.name, n)
				if err != nil {
					log.Printf("%s: probe of %s/%s/%d failed: %v", s.host.Name, portal, t.name, n, err)
					continue
				}
				luns = append(luns, l)
			}
		}
		return targets
	}
	for _, st := range sendTargets {
		portal := portalKey(st.Address, st.Port)
		for _, t := range scan(portal, "") {
			discovered = append(discovered, types.HostInternetScsiHbaStaticTarget{
				Address: st.Address, Port: st.Port, IScsiName: t.name,
				DiscoveryMethod: "sendTargetMethod", Parent: portal,
			})
		}
	}
	for _, st := range statics {
		scan(portalKey(st.Address, st.Port), st.IScsiName)
	}
	log.Printf("%s: rescan as %s found %d LUN path(s)", s.host.Name, iqn, len(luns))

	s.mu.Lock()
	s.luns = luns
	s.discovered = discovered
	s.mu.Unlock()
	s.publish(ctx)
}

// visibleLun finds a LUN of this host by device path, canonical name or ScsiLun uuid.
func (s *storageSystem) visibleLun(deviceName, lunUUID string) (types.HostScsiDisk, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range buildDisks(s.luns) {
		byName := deviceName != "" && (deviceName == d.disk.DevicePath || deviceName == d.disk.CanonicalName)
		byUUID := lunUUID != "" && lunUUID == d.disk.Uuid
		if (byName || byUUID) && (deviceName == "" || byName) && (lunUUID == "" || byUUID) {
			return d.disk, true
		}
	}
	return types.HostScsiDisk{}, false
}

// publish renders the device info and stores it on the storage system and on its host
// (config.storageDevice), through the registry so property collectors see the change.
func (s *storageSystem) publish(ctx *simulator.Context) {
	s.mu.Lock()
	info := s.render()
	s.mu.Unlock()
	if ctx == nil { // during setup, before the server runs
		s.StorageDeviceInfo = &info
		copied := info
		s.host.Config.StorageDevice = &copied
		return
	}
	ctx.Update(s.HostStorageSystem, []types.PropertyChange{{Name: "storageDeviceInfo", Val: info}})
	// vCenter reports a change to every collector whose path it touches; the simulator matches
	// only paths at or above the changed name, so the adapters are named as well
	ctx.WithLock(s.host, func() {
		ctx.Update(s.host, []types.PropertyChange{
			{Name: "config.storageDevice", Val: info},
			{Name: "config.storageDevice.hostBusAdapter", Val: info.HostBusAdapter},
		})
	})
}
