// This file exists so the lab's vCenter keeps what lunbridge changed across a restart, as a
// real vCenter (and its ESXi hosts) do: a restarted stock simulator would come back with every
// RDM gone and every host's iSCSI configuration reset.
//
// What is kept (-state FILE, JSON; written about once a second when it changed, and a last
// time on SIGINT/SIGTERM after the HTTPS server stopped taking requests):
//   - per VM (by name): every device that was not there when the VM was made (createVMs),
//     as the simulator holds it (vim25 XML of the device: key, controller key, bus, unit,
//     PCI slot, RDM backing with device name, lunUuid, mapping file name, capacity). That is
//     the PVSCSI controllers and RDM disks lunbridge added, with their keys and unit numbers.
//   - per host (by name): the software iSCSI adapter's IQN, send targets, static targets,
//     the targets found through send targets and the LUN paths of the last rescan (a
//     vCenter restart does not reboot the hosts, so they still list what they saw).
//
// What is not kept: sessions (clients log in again, as after a vCenter restart), tasks and
// their results (a task running at the stop is lost, as if vCenter had crashed during it;
// whether its change is saved depends on whether it ended before the last save), devices
// removed from the VMs' original set, power state changes, VMs made or destroyed after the
// start, events, and the simulated datastore's files (the RDM mapping files are made again).
//
// Everything else needs no saving: the inventory is built the same way on every start (the
// same hosts, VMs, managed object references, BIOS and instance UUIDs, WWPNs), and the TLS
// certificate is the simulator's built-in one, so the thumbprint a client pinned still holds.
// On start with the file present the devices are added back through the simulator's own
// ReconfigVM_Task, before the server listens; a device that does not come back with its saved
// key is fatal, so a restored lab is never quietly different.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"sort"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vim25/xml"
)

type lunStateJSON struct {
	Portal    string `json:"portal"`
	Target    string `json:"target"`
	Number    int    `json:"number"`
	Canonical string `json:"canonical"`
	ID        string `json:"id"`
	Vendor    string `json:"vendor"`
	Model     string `json:"model"`
	Revision  string `json:"revision"`
	Serial    string `json:"serial"`
	BlockSize int64  `json:"blockSize"`
	Blocks    int64  `json:"blocks"`
	State     string `json:"state"`
}

type hostStateJSON struct {
	IQN           string                                  `json:"iqn"`
	SendTargets   []types.HostInternetScsiHbaSendTarget   `json:"sendTargets"`
	StaticTargets []types.HostInternetScsiHbaStaticTarget `json:"staticTargets"`
	Discovered    []types.HostInternetScsiHbaStaticTarget `json:"discovered"`
	Luns          []lunStateJSON                          `json:"luns"`
}

type vmStateJSON struct {
	Moref    string `json:"moref"`
	BiosUUID string `json:"biosUuid"`
	// Devices is vim25 XML (ArrayOfVirtualDevice) of the devices added since the VM was made.
	Devices string `json:"devices"`
	// Keys, controllers and units, for people reading the file (the XML is what is restored).
	Summary []string `json:"summary"`
}

type stateJSON struct {
	Hosts map[string]hostStateJSON `json:"hosts"`
	VMs   map[string]vmStateJSON   `json:"vms"`
}

// persister saves and restores the state above for one simulator.
type persister struct {
	file     string
	client   *vim25.Client // in-process: the property collector and tasks take the registry locks
	storage  []*storageSystem
	baseline map[string]map[int32]bool // VM name -> device keys it was made with
	last     []byte
}

func newPersister(ctx context.Context, file string, client *vim25.Client, storage []*storageSystem) (*persister, error) {
	p := &persister{file: file, client: client, storage: storage, baseline: map[string]map[int32]bool{}}
	vms, err := p.vms(ctx)
	if err != nil {
		return nil, err
	}
	for _, vm := range vms {
		keys := map[int32]bool{}
		for _, dev := range vm.Config.Hardware.Device {
			keys[dev.GetVirtualDevice().Key] = true
		}
		p.baseline[vm.Name] = keys
	}
	return p, nil
}

func (p *persister) vms(ctx context.Context) ([]mo.VirtualMachine, error) {
	v, err := view.NewManager(p.client).CreateContainerView(ctx, p.client.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		return nil, err
	}
	var vms []mo.VirtualMachine
	err = v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name", "config.uuid", "config.hardware.device"}, &vms)
	_ = v.Destroy(ctx)
	sort.Slice(vms, func(i, j int) bool { return vms[i].Name < vms[j].Name })
	return vms, err
}

// snapshot reads the state to keep from the live simulator.
func (p *persister) snapshot(ctx context.Context) (stateJSON, error) {
	st := stateJSON{Hosts: map[string]hostStateJSON{}, VMs: map[string]vmStateJSON{}}
	for _, ss := range p.storage {
		ss.mu.Lock()
		h := hostStateJSON{
			IQN:           ss.iqn,
			SendTargets:   append([]types.HostInternetScsiHbaSendTarget{}, ss.sendTargets...),
			StaticTargets: append([]types.HostInternetScsiHbaStaticTarget{}, ss.staticTargets...),
			Discovered:    append([]types.HostInternetScsiHbaStaticTarget{}, ss.discovered...),
			Luns:          []lunStateJSON{},
		}
		for _, l := range ss.luns {
			h.Luns = append(h.Luns, lunStateJSON{
				Portal: l.portal, Target: l.target, Number: l.number, Canonical: l.canonical, ID: l.id,
				Vendor: l.vendor, Model: l.model, Revision: l.revision, Serial: l.serial,
				BlockSize: l.blockSize, Blocks: l.blocks, State: l.state,
			})
		}
		ss.mu.Unlock()
		st.Hosts[ss.host.Name] = h
	}
	vms, err := p.vms(ctx)
	if err != nil {
		return st, err
	}
	for _, vm := range vms {
		base, known := p.baseline[vm.Name]
		if !known || vm.Config == nil {
			continue // made after the start: not kept
		}
		var added types.ArrayOfVirtualDevice
		var summary []string
		for _, dev := range vm.Config.Hardware.Device {
			d := dev.GetVirtualDevice()
			if base[d.Key] {
				continue
			}
			added.VirtualDevice = append(added.VirtualDevice, dev)
			summary = append(summary, fmt.Sprintf("%T key=%d controllerKey=%d unit=%d", dev, d.Key, d.ControllerKey, unitOf(d)))
		}
		if len(added.VirtualDevice) == 0 {
			continue
		}
		data, err := xml.Marshal(added)
		if err != nil {
			return st, fmt.Errorf("encode devices of %s: %w", vm.Name, err)
		}
		st.VMs[vm.Name] = vmStateJSON{Moref: vm.Self.Value, BiosUUID: vm.Config.Uuid, Devices: string(data), Summary: summary}
	}
	return st, nil
}

// save writes the state file if it changed since the last write.
func (p *persister) save(ctx context.Context) error {
	st, err := p.snapshot(ctx)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // the device XML stays readable
	enc.SetIndent("", "  ")
	if err := enc.Encode(st); err != nil {
		return err
	}
	data := bytes.TrimSpace(buf.Bytes())
	if bytes.Equal(data, p.last) {
		return nil
	}
	if err := writeFile(p.file, data); err != nil {
		return err
	}
	p.last = data
	return nil
}

// run saves every `every` until ctx ends.
func (p *persister) run(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := p.save(ctx); err != nil && ctx.Err() == nil {
				log.Printf("saving state to %s failed: %v", p.file, err)
			}
		}
	}
}

// restore puts the saved state back; a missing file means a first start (nothing to do).
func (p *persister) restore(ctx context.Context) error {
	data, err := os.ReadFile(p.file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st stateJSON
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("%s: %w", p.file, err)
	}
	for _, ss := range p.storage {
		h, ok := st.Hosts[ss.host.Name]
		if !ok {
			continue
		}
		ss.mu.Lock()
		ss.iqn = h.IQN
		ss.sendTargets, ss.staticTargets, ss.discovered = h.SendTargets, h.StaticTargets, h.Discovered
		ss.luns = nil
		for _, l := range h.Luns {
			ss.luns = append(ss.luns, &discoveredLun{
				portal: l.Portal, target: l.Target, number: l.Number, canonical: l.Canonical, id: l.ID,
				vendor: l.Vendor, model: l.Model, revision: l.Revision, serial: l.Serial,
				blockSize: l.BlockSize, blocks: l.Blocks, state: l.State,
			})
		}
		ss.mu.Unlock()
		ss.publish(nil) // before the server runs
	}
	vms, err := p.vms(ctx)
	if err != nil {
		return err
	}
	restoring.Store(true)
	defer restoring.Store(false)
	restored := 0
	for _, vm := range vms {
		saved, ok := st.VMs[vm.Name]
		if !ok {
			continue
		}
		if saved.Moref != vm.Self.Value || saved.BiosUUID != vm.Config.Uuid {
			return fmt.Errorf("%s is now %s/%s, was %s/%s: the inventory is not the one saved",
				vm.Name, vm.Self.Value, vm.Config.Uuid, saved.Moref, saved.BiosUUID)
		}
		if err := p.restoreVM(ctx, vm, saved); err != nil {
			return fmt.Errorf("restore %s: %w", vm.Name, err)
		}
		restored++
	}
	p.last = nil
	log.Printf("restored %d host(s) and the added devices of %d VM(s) from %s", len(st.Hosts), restored, p.file)
	return nil
}

func (p *persister) restoreVM(ctx context.Context, vm mo.VirtualMachine, saved vmStateJSON) error {
	var added types.ArrayOfVirtualDevice
	dec := xml.NewDecoder(bytes.NewReader([]byte(saved.Devices)))
	dec.TypeFunc = types.TypeFunc()
	if err := dec.Decode(&added); err != nil {
		return err
	}
	// controllers first (the disks name them), each without its device list (filled anew)
	var controllers, others []types.BaseVirtualDeviceConfigSpec
	want := map[int32]types.BaseVirtualDevice{}
	for _, dev := range added.VirtualDevice {
		want[dev.GetVirtualDevice().Key] = dev
		spec := &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: dev}
		if c, ok := dev.(types.BaseVirtualController); ok {
			c.GetVirtualController().Device = nil
			controllers = append(controllers, spec)
			continue
		}
		if disk, ok := dev.(*types.VirtualDisk); ok {
			if _, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
				spec.FileOperation = types.VirtualDeviceConfigSpecFileOperationCreate // the mapping file
			}
		}
		others = append(others, spec)
	}
	obj := object.NewVirtualMachine(p.client, vm.Self)
	task, err := obj.Reconfigure(ctx, types.VirtualMachineConfigSpec{DeviceChange: append(controllers, others...)})
	if err != nil {
		return err
	}
	if err := task.Wait(ctx); err != nil {
		return err
	}
	var now mo.VirtualMachine
	if err := property.DefaultCollector(p.client).RetrieveOne(ctx, vm.Self, []string{"config.hardware.device"}, &now); err != nil {
		return err
	}
	for _, dev := range now.Config.Hardware.Device {
		d := dev.GetVirtualDevice()
		if w, ok := want[d.Key]; ok {
			wd := w.GetVirtualDevice()
			if wd.ControllerKey != d.ControllerKey || unitOf(wd) != unitOf(d) {
				return fmt.Errorf("device %d came back on controller %d unit %d", d.Key, d.ControllerKey, unitOf(d))
			}
			delete(want, d.Key)
		}
	}
	if len(want) > 0 {
		return fmt.Errorf("%d device(s) did not come back with their keys", len(want))
	}
	return nil
}

func unitOf(d *types.VirtualDevice) int32 {
	if d.UnitNumber == nil {
		return -1
	}
	return *d.UnitNumber
}
