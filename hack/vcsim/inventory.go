// This file exists to shape the simulated inventory the way the lab needs it: every host gets
// its own storage system (per-host WWPNs and IQN), VMs are placed on known hosts (-vms-per-host per host,
// so runs are repeatable), and the result is written as JSON for the tests to read.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"sort"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/simulator/esx"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// sortedHosts returns the simulator's hosts sorted by name (their index is position + 1).
func sortedHosts(m *simulator.Model) []*simulator.HostSystem {
	var hosts []*simulator.HostSystem
	for _, e := range m.Map().All("HostSystem") {
		hosts = append(hosts, e.(*simulator.HostSystem))
	}
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Name < hosts[j].Name })
	return hosts
}

// installStorage replaces every host's stock HostStorageSystem (same MoRef) with ours.
func installStorage(m *simulator.Model, tools *iscsiTools) []*storageSystem {
	var out []*storageSystem
	for i, h := range sortedHosts(m) {
		stock := m.Map().Get(*h.ConfigManager.StorageSystem).(*simulator.HostStorageSystem)
		ss := newStorageSystem(stock, h, i+1, tools)
		m.Map().Put(ss)
		ss.publish(nil)
		out = append(out, ss)
	}
	return out
}

// createVMs makes vmsPerHost powered-on VMs on every host, named <host>_VM<n>, each with a
// ParaVirtualSCSIController (bus 0, PCI slot 160) holding a boot disk at unit 0, an IDE CD-ROM and a NIC.
func createVMs(ctx context.Context, m *simulator.Model, c *vim25.Client, vmsPerHost int) error {
	finder := find.NewFinder(c, true)
	dc, err := finder.DefaultDatacenter(ctx)
	if err != nil {
		return err
	}
	finder.SetDatacenter(dc)
	folders, err := dc.Folders(ctx)
	if err != nil {
		return err
	}
	nic := esx.EthernetCard
	if pg, err := finder.Network(ctx, "DC0_DVPG0"); err == nil {
		if backing, err := pg.EthernetCardBackingInfo(ctx); err == nil {
			nic.Backing = backing
		}
	}
	for _, h := range sortedHosts(m) {
		host := object.NewHostSystem(c, h.Reference())
		pool, err := host.ResourcePool(ctx)
		if err != nil {
			return err
		}
		for i := 0; i < vmsPerHost; i++ {
			name := fmt.Sprintf("%s_VM%d", h.Name, i)
			spec := types.VirtualMachineConfigSpec{
				Name:    name,
				GuestId: string(types.VirtualMachineGuestOsIdentifierOtherGuest64),
				Files:   &types.VirtualMachineFileInfo{VmPathName: "[LocalDS_0]"},
			}
			var devices object.VirtualDeviceList
			scsi, _ := devices.CreateSCSIController("pvscsi")
			// vCenter gives the first SCSI controller PCI slot 160; the guest finds its SCSI host by it
			scsi.GetVirtualDevice().SlotInfo = &types.VirtualDevicePciBusSlotInfo{PciSlotNumber: 160}
			ide, _ := devices.CreateIDEController()
			cdrom, _ := devices.CreateCdrom(ide.(*types.VirtualIDEController))
			disk := devices.CreateDisk(scsi.(types.BaseVirtualController), types.ManagedObjectReference{},
				"[LocalDS_0] "+path.Join(name, "disk1.vmdk"))
			disk.CapacityInKB = 16 * 1024 * 1024
			card := nic
			devices = append(devices, scsi, cdrom, disk, &card) // as the stock model: no IDE controller entry
			spec.DeviceChange, _ = devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
			task, err := folders.VmFolder.CreateVM(ctx, spec, pool, host)
			if err != nil {
				return err
			}
			info, err := task.WaitForResult(ctx, nil)
			if err != nil {
				return fmt.Errorf("create %s: %w", name, err)
			}
			vm := object.NewVirtualMachine(c, info.Result.(types.ManagedObjectReference))
			if task, err = vm.PowerOn(ctx); err == nil {
				_, err = task.WaitForResult(ctx, nil)
			}
			if err != nil {
				return fmt.Errorf("power on %s: %w", name, err)
			}
		}
	}
	return nil
}

type fcJSON struct {
	Device    string `json:"device"`
	WWPN      string `json:"wwpn"`
	WWNN      string `json:"wwnn"`
	WWPNColon string `json:"wwpnColon"`
	WWNNColon string `json:"wwnnColon"`
}

type iscsiJSON struct {
	Device string `json:"device"`
	IQN    string `json:"iqn"`
}

type hostJSON struct {
	Name    string    `json:"name"`
	Moref   string    `json:"moref"`
	Cluster *string   `json:"cluster"`
	FC      []fcJSON  `json:"fc"`
	ISCSI   iscsiJSON `json:"iscsi"`
}

type controllerJSON struct {
	Key       int32  `json:"key"`
	BusNumber int32  `json:"busNumber"`
	Type      string `json:"type"`
}

type diskJSON struct {
	Key           int32  `json:"key"`
	ControllerKey int32  `json:"controllerKey"`
	UnitNumber    int32  `json:"unitNumber"`
	FileName      string `json:"fileName"`
}

type vmJSON struct {
	Name            string           `json:"name"`
	Moref           string           `json:"moref"`
	BiosUUID        string           `json:"biosUuid"`
	InstanceUUID    string           `json:"instanceUuid"`
	Host            string           `json:"host"`
	ScsiControllers []controllerJSON `json:"scsiControllers"`
	Disks           []diskJSON       `json:"disks"`
}

type inventoryJSON struct {
	URL        string     `json:"url"`
	Username   string     `json:"username"`
	Datacenter string     `json:"datacenter"`
	Notes      []string   `json:"notes"`
	Hosts      []hostJSON `json:"hosts"`
	VMs        []vmJSON   `json:"vms"`
}

func hex16(v int64) string { return fmt.Sprintf("%016x", uint64(v)) }

func colon(h string) string {
	out := h[:2]
	for i := 2; i < len(h); i += 2 {
		out += ":" + h[i:i+2]
	}
	return out
}

// describe builds the inventory document from the live simulator objects.
func describe(m *simulator.Model, storage []*storageSystem, url, username string) inventoryJSON {
	inv := inventoryJSON{
		URL: url, Username: username,
		Notes: []string{
			"hosts have no local SCSI disk: config.storageDevice.scsiLun lists only LUNs found by an iSCSI rescan",
			"each VM's ParaVirtualSCSIController holds a boot disk at unit 0 (see disks)",
			"VM placement is fixed: -vms-per-host VMs on each host, named <host>_VM<n>",
		},
	}
	if dcs := m.Map().All("Datacenter"); len(dcs) > 0 {
		inv.Datacenter = dcs[0].Entity().Name
	}
	hostName := map[types.ManagedObjectReference]string{}
	for _, ss := range storage {
		h := ss.host
		hostName[h.Reference()] = h.Name
		hj := hostJSON{Name: h.Name, Moref: h.Reference().Value}
		if parent := m.Map().Get(*h.Parent); parent != nil && parent.Reference().Type == "ClusterComputeResource" {
			name := parent.(mo.Entity).Entity().Name
			hj.Cluster = &name
		}
		ss.mu.Lock()
		for _, hba := range ss.adapters() {
			switch a := hba.(type) {
			case *types.HostFibreChannelHba:
				p, n := hex16(a.PortWorldWideName), hex16(a.NodeWorldWideName)
				hj.FC = append(hj.FC, fcJSON{Device: a.Device, WWPN: p, WWNN: n, WWPNColon: colon(p), WWNNColon: colon(n)})
			case *types.HostInternetScsiHba:
				hj.ISCSI = iscsiJSON{Device: a.Device, IQN: a.IScsiName}
			}
		}
		ss.mu.Unlock()
		inv.Hosts = append(inv.Hosts, hj)
	}
	var vms []*simulator.VirtualMachine
	for _, e := range m.Map().All("VirtualMachine") {
		vms = append(vms, e.(*simulator.VirtualMachine))
	}
	sort.Slice(vms, func(i, j int) bool { return vms[i].Name < vms[j].Name })
	for _, vm := range vms {
		vj := vmJSON{
			Name: vm.Name, Moref: vm.Reference().Value, BiosUUID: vm.Config.Uuid,
			InstanceUUID: vm.Config.InstanceUuid, Host: hostName[*vm.Runtime.Host],
			ScsiControllers: []controllerJSON{}, Disks: []diskJSON{},
		}
		for _, dev := range vm.Config.Hardware.Device {
			switch d := dev.(type) {
			case types.BaseVirtualSCSIController:
				c := d.GetVirtualSCSIController()
				vj.ScsiControllers = append(vj.ScsiControllers, controllerJSON{
					Key: c.Key, BusNumber: c.BusNumber, Type: reflect.TypeOf(dev).Elem().Name(),
				})
			case *types.VirtualDisk:
				dj := diskJSON{Key: d.Key, ControllerKey: d.ControllerKey}
				if d.UnitNumber != nil {
					dj.UnitNumber = *d.UnitNumber
				}
				if b, ok := d.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
					dj.FileName = b.GetVirtualDeviceFileBackingInfo().FileName
				}
				vj.Disks = append(vj.Disks, dj)
			}
		}
		inv.VMs = append(inv.VMs, vj)
	}
	return inv
}

// writeJSON writes v to file atomically (readers never see a half-written file).
func writeJSON(file string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(file, data)
}

// writeFile writes data and a newline to file atomically.
func writeFile(file string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), ".vcsim-inventory-*")
	if err != nil {
		return err
	}
	if _, err = tmp.Write(append(data, '\n')); err == nil {
		err = tmp.Close()
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), file)
}
