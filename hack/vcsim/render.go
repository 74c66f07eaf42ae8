// This file exists to turn one host's storage state (its adapters, iSCSI targets and the LUN
// paths of the last rescan) into the vSphere HostStorageDeviceInfo that clients read from
// config.storageDevice: HBAs with per-host WWPNs and IQN, ScsiDisks, topology and multipath.
package main

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/vmware/govmomi/vim25/types"
)

const (
	wwpnBase = 0x10000090fa000000 // Emulex-style port name; the low bytes carry host index and port
	wwnnBase = 0x20000090fa000000
)

// fcNames returns the deterministic WWPN and WWNN of FC port (1 or 2) of host index (1-based).
func fcNames(index, port int) (wwpn, wwnn int64) {
	low := int64(index)<<8 | int64(port)
	return wwpnBase | low, wwnnBase | low
}

var nonIQN = regexp.MustCompile(`[^a-z0-9.-]+`)

// defaultIQN is what an ESXi host picks for its software adapter: a fixed prefix, the host
// name and a short suffix (random on ESXi, derived from the name here so runs are repeatable).
func defaultIQN(hostName string) string {
	sum := sha1.Sum([]byte(hostName))
	name := strings.Trim(nonIQN.ReplaceAllString(strings.ToLower(hostName), "-"), "-")
	return fmt.Sprintf("iqn.1998-01.com.vmware:%s-%s", name, hex.EncodeToString(sum[:4]))
}

func (s *storageSystem) adapters() []types.BaseHostHostBusAdapter {
	hbas := []types.BaseHostHostBusAdapter{
		&types.HostParallelScsiHba{HostHostBusAdapter: types.HostHostBusAdapter{
			Key: "key-vim.host.ParallelScsiHba-vmhba0", Device: "vmhba0", Bus: 3, Status: "unknown",
			Model: "PVSCSI SCSI Controller", Driver: "pvscsi", Pci: "0000:03:00.0",
		}},
	}
	for port := 1; port <= 2; port++ {
		wwpn, wwnn := fcNames(s.index, port)
		dev := fmt.Sprintf("vmhba%d", port)
		hbas = append(hbas, &types.HostFibreChannelHba{
			HostHostBusAdapter: types.HostHostBusAdapter{
				Key: "key-vim.host.FibreChannelHba-" + dev, Device: dev, Bus: int32(58 + port), Status: "online",
				Model: "Emulex LightPulse LPe32000 PCIe Fibre Channel Adapter", Driver: "lpfc",
				Pci: fmt.Sprintf("0000:%02x:00.%d", 58+port, port-1),
			},
			PortWorldWideName: wwpn, NodeWorldWideName: wwnn, PortType: "fabric", Speed: 16,
		})
	}
	statics := append(append([]types.HostInternetScsiHbaStaticTarget(nil), s.discovered...), s.staticTargets...)
	hbas = append(hbas, &types.HostInternetScsiHba{
		HostHostBusAdapter: types.HostHostBusAdapter{
			Key: "key-vim.host.InternetScsiHba-" + iscsiDevice, Device: iscsiDevice, Status: "online",
			Model: "iSCSI Software Adapter", Driver: "iscsi_vmk",
		},
		IsSoftwareBased:       true,
		CanBeDisabled:         types.NewBool(true),
		NetworkBindingSupport: types.HostInternetScsiHbaNetworkBindingSupportTypeOptional,
		DiscoveryCapabilities: types.HostInternetScsiHbaDiscoveryCapabilities{
			StaticTargetDiscoverySettable: false, SendTargetsDiscoverySettable: false,
		},
		DiscoveryProperties: types.HostInternetScsiHbaDiscoveryProperties{
			StaticTargetDiscoveryEnabled: true, SendTargetsDiscoveryEnabled: true,
		},
		AuthenticationCapabilities: types.HostInternetScsiHbaAuthenticationCapabilities{ChapAuthSettable: true},
		IpCapabilities:             types.HostInternetScsiHbaIPCapabilities{},
		IpProperties:               types.HostInternetScsiHbaIPProperties{},
		IScsiName:                  s.iqn,
		IScsiAlias:                 s.host.Name,
		ConfiguredSendTarget:       append([]types.HostInternetScsiHbaSendTarget(nil), s.sendTargets...),
		ConfiguredStaticTarget:     statics,
		MaxSpeedMb:                 10000,
		CurrentSpeedMb:             10000,
	})
	return hbas
}

// diskPaths is one ScsiDisk and the LUN paths (target/portal/LUN) that lead to it.
type diskPaths struct {
	disk  types.HostScsiDisk
	paths []*discoveredLun
}

// buildDisks groups LUN paths by canonical name (one disk per NAA, several paths if the same
// LUN is reachable through several targets or portals), sorted by canonical name.
func buildDisks(luns []*discoveredLun) []diskPaths {
	byName := map[string]*diskPaths{}
	var names []string
	for _, l := range luns {
		d, ok := byName[l.canonical]
		if !ok {
			d = &diskPaths{disk: scsiDisk(l)}
			byName[l.canonical] = d
			names = append(names, l.canonical)
		}
		d.paths = append(d.paths, l)
		if l.state == "ok" {
			d.disk.OperationalState = []string{"ok"}
		}
	}
	sort.Strings(names)
	out := make([]diskPaths, 0, len(names))
	for _, n := range names {
		out = append(out, *byName[n])
	}
	return out
}

func scsiDisk(l *discoveredLun) types.HostScsiDisk {
	model := []byte(fmt.Sprintf("%-6.6s", l.model))
	uuid := fmt.Sprintf("02%04x0000%s%s", l.number, l.id, hex.EncodeToString(model))
	path := "/vmfs/devices/disks/" + l.canonical
	serial := l.serial
	if serial == "" {
		serial = "unavailable"
	}
	lun := types.ScsiLun{
		HostDevice: types.HostDevice{DeviceName: path, DeviceType: "disk"},
		Key:        "key-vim.host.ScsiDisk-" + uuid,
		Uuid:       uuid,
		Descriptor: []types.ScsiLunDescriptor{
			{Quality: "highQuality", Id: l.canonical},
			{Quality: "highQuality", Id: "vml." + uuid},
			{Quality: "highQuality", Id: uuid},
		},
		CanonicalName:    l.canonical,
		DisplayName:      fmt.Sprintf("%s iSCSI Disk (%s)", l.vendor, l.canonical),
		LunType:          "disk",
		Vendor:           l.vendor,
		Model:            l.model,
		Revision:         l.revision,
		ScsiLevel:        5,
		SerialNumber:     serial,
		QueueDepth:       128,
		OperationalState: []string{l.state},
		Capabilities:     &types.ScsiLunCapabilities{UpdateDisplayNameSupported: true},
		VStorageSupport:  "vStorageUnknown",
		ProtocolEndpoint: types.NewBool(false),
	}
	if strings.HasPrefix(l.canonical, "naa.") {
		data, _ := hex.DecodeString(l.id)
		lun.DurableName = &types.ScsiLunDurableName{Namespace: "NAA", NamespaceId: 3, Data: data}
	}
	return types.HostScsiDisk{
		ScsiLun:      lun,
		Capacity:     types.HostDiskDimensionsLba{BlockSize: int32(l.blockSize), Block: l.blocks},
		DevicePath:   path,
		Ssd:          types.NewBool(false),
		LocalDisk:    types.NewBool(false),
		ScsiDiskType: "native512",
	}
}

// render builds the HostStorageDeviceInfo of the host from its current state (mu held).
func (s *storageSystem) render() types.HostStorageDeviceInfo {
	disks := buildDisks(s.luns)
	adapterKey := "key-vim.host.InternetScsiHba-" + iscsiDevice
	targetNo := map[string]int{} // "portal target" → T number on vmhba64
	var targets []types.HostScsiTopologyTarget
	var scsiLuns []types.BaseScsiLun
	var units []types.HostMultipathInfoLogicalUnit
	for _, d := range disks {
		disk := d.disk
		scsiLuns = append(scsiLuns, &disk)
		unit := types.HostMultipathInfoLogicalUnit{
			Key: "key-vim.host.MultipathInfo.LogicalUnit-" + disk.Uuid, Id: disk.Uuid, Lun: disk.Key,
			Policy:                 &types.HostMultipathInfoLogicalUnitPolicy{Policy: "VMW_PSP_MRU"},
			StorageArrayTypePolicy: &types.HostMultipathInfoLogicalUnitStorageArrayTypePolicy{Policy: "VMW_SATP_DEFAULT_AA"},
		}
		for _, p := range d.paths {
			key := p.portal + " " + p.target
			t, ok := targetNo[key]
			transport := &types.HostInternetScsiTargetTransport{IScsiName: p.target, Address: []string{p.portal}}
			if !ok {
				t = len(targets)
				targetNo[key] = t
				targets = append(targets, types.HostScsiTopologyTarget{
					Key:       fmt.Sprintf("key-vim.host.ScsiTopology.Target-%s:0:%d", iscsiDevice, t),
					Target:    int32(t),
					Transport: transport,
				})
			}
			targets[t].Lun = append(targets[t].Lun, types.HostScsiTopologyLun{
				Key: "key-vim.host.ScsiTopology.Lun-" + disk.Uuid, Lun: int32(p.number), ScsiLun: disk.Key,
			})
			name := fmt.Sprintf("%s:C0:T%d:L%d", iscsiDevice, t, p.number)
			state := "active"
			if p.state != "ok" {
				state = "dead"
			}
			unit.Path = append(unit.Path, types.HostMultipathInfoPath{
				Key: "key-vim.host.MultipathInfo.Path-" + name, Name: name, PathState: state, State: state,
				IsWorkingPath: types.NewBool(state == "active"), Adapter: adapterKey, Lun: unit.Key, Transport: transport,
			})
		}
		units = append(units, unit)
	}
	topology := []types.HostScsiTopologyInterface{
		{Key: "key-vim.host.ScsiTopology.Interface-vmhba0", Adapter: "key-vim.host.ParallelScsiHba-vmhba0"},
		{Key: "key-vim.host.ScsiTopology.Interface-vmhba1", Adapter: "key-vim.host.FibreChannelHba-vmhba1"},
		{Key: "key-vim.host.ScsiTopology.Interface-vmhba2", Adapter: "key-vim.host.FibreChannelHba-vmhba2"},
		{Key: "key-vim.host.ScsiTopology.Interface-" + iscsiDevice, Adapter: adapterKey, Target: targets},
	}
	return types.HostStorageDeviceInfo{
		HostBusAdapter:              s.adapters(),
		ScsiLun:                     scsiLuns,
		ScsiTopology:                &types.HostScsiTopology{Adapter: topology},
		MultipathInfo:               &types.HostMultipathInfo{Lun: units},
		SoftwareInternetScsiEnabled: true,
	}
}
