// This file exists because the stock simulator accepts a raw disk mapping of any device name,
// while a real vCenter refuses a LUN that the VM's host cannot see. A registry handler hook
// checks every RDM backing of a ReconfigVM_Task against the LUNs of the VM's current host
// (and fills lunUuid and capacity as ESXi does) before the stock reconfigure runs.
package main

import (
	"fmt"
	"log"
	"sync/atomic"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// restoring is set while persist.go puts the saved devices back before the server listens: a
// restarted vCenter keeps its VMs' RDMs whatever the hosts' last rescan listed (a rescan cut
// short by the stop may have lost a LUN that the next rescan finds again).
var restoring atomic.Bool

// guardVM hooks the registry so that every authenticated call of `method` on a VM is checked
// first by check, under the VM's lock. An accepted call goes on to the stock VirtualMachine; a
// refused one is answered by what refusal makes of the fault (a task that fails, as vCenter
// does). The hook cannot simply return another handler: for a logged-in session the simulator
// looks the object up again (Session.Get falls back to the global registry), so the refusal is
// put, once, in the session's own registry under the VM's reference, where that lookup finds it
// first. The global registry keeps the stock *simulator.VirtualMachine that other code
// type-asserts. While the saved state is restored, nothing is checked: vCenter does not check
// its VMs again on a restart.
func guardVM(
	r *simulator.Registry,
	method string,
	check func(*simulator.Context, *simulator.VirtualMachine, any) types.BaseMethodFault,
	refusal func(*simulator.VirtualMachine, types.BaseMethodFault) mo.Reference,
) {
	prev := r.Handler
	r.Handler = func(ctx *simulator.Context, m *simulator.Method) (mo.Reference, types.BaseMethodFault) {
		if prev != nil {
			if h, f := prev(ctx, m); h != nil || f != nil {
				return h, f
			}
		}
		if m.Name != method || m.This.Type != "VirtualMachine" || ctx.Session == nil || restoring.Load() {
			return nil, nil
		}
		vm, ok := ctx.Map.Get(m.This).(*simulator.VirtualMachine)
		if !ok {
			return nil, nil
		}
		var f types.BaseMethodFault
		ctx.WithLock(vm, func() { f = check(ctx, vm, m.Body) })
		if f != nil {
			log.Printf("%s: %s refused: %s", vm.Name, method, f.GetMethodFault().FaultMessage[0].Message)
			ctx.Session.Put(refusal(vm, f))
		}
		return nil, nil
	}
}

// installRDMGuard checks every ReconfigVM_Task's RDMs against the LUNs of the VM's host, and
// fills lunUuid in the accepted ones.
func installRDMGuard(r *simulator.Registry) {
	guardVM(r, "ReconfigVM_Task",
		func(ctx *simulator.Context, vm *simulator.VirtualMachine, body any) types.BaseMethodFault {
			if req, ok := body.(*types.ReconfigVM_Task); ok {
				return checkRDM(ctx, vm, &req.Spec)
			}
			return nil
		},
		func(vm *simulator.VirtualMachine, f types.BaseMethodFault) mo.Reference {
			return &refusedVM{VirtualMachine: vm, fault: f}
		})
}

// refusedVM answers one ReconfigVM_Task of a VM with a task that fails with fault.
type refusedVM struct {
	*simulator.VirtualMachine
	fault types.BaseMethodFault
}

func (r *refusedVM) ReconfigVMTask(ctx *simulator.Context, _ *types.ReconfigVM_Task) soap.HasFault {
	ctx.Session.Remove(ctx, r.Self)
	task := simulator.CreateTask(r.VirtualMachine, "reconfigVm", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		return nil, r.fault
	})
	return &methods.ReconfigVM_TaskBody{Res: &types.ReconfigVM_TaskResponse{Returnval: task.Run(ctx)}}
}

func rdmFault(index int, property, msg string) types.BaseMethodFault {
	f := &types.InvalidDeviceBacking{}
	f.DeviceIndex = int32(index)
	f.Property = property
	f.FaultMessage = []types.LocalizableMessage{{Key: "lunbridge.vcsim.rdm", Message: msg}}
	return f
}

// checkRDM checks every RDM disk added or edited by spec against the LUNs of the VM's host.
func checkRDM(ctx *simulator.Context, vm *simulator.VirtualMachine, spec *types.VirtualMachineConfigSpec) types.BaseMethodFault {
	for i, change := range spec.DeviceChange {
		dc := change.GetVirtualDeviceConfigSpec()
		if dc.Operation == types.VirtualDeviceConfigSpecOperationRemove {
			continue
		}
		disk, ok := dc.Device.(*types.VirtualDisk)
		if !ok {
			continue
		}
		b, ok := disk.Backing.(*types.VirtualDiskRawDiskMappingVer1BackingInfo)
		if !ok {
			continue
		}
		prop := fmt.Sprintf("spec.deviceChange[%d].device.backing", i)
		switch b.CompatibilityMode {
		case string(types.VirtualDiskCompatibilityModePhysicalMode), string(types.VirtualDiskCompatibilityModeVirtualMode):
		default:
			return rdmFault(i, prop+".compatibilityMode", fmt.Sprintf("invalid RDM compatibilityMode %q", b.CompatibilityMode))
		}
		if b.DeviceName == "" && b.LunUuid == "" {
			return rdmFault(i, prop+".deviceName", "RDM backing names no device (deviceName or lunUuid)")
		}
		if vm.Runtime.Host == nil {
			return rdmFault(i, prop, "VM has no host")
		}
		ss := hostStorage(ctx, *vm.Runtime.Host)
		if ss == nil {
			return rdmFault(i, prop, "VM's host has no storage system")
		}
		lun, found := ss.visibleLun(b.DeviceName, b.LunUuid)
		if !found {
			return rdmFault(i, prop+".deviceName", fmt.Sprintf(
				"LUN %q (lunUuid %q) is not visible on host %s", b.DeviceName, b.LunUuid, ss.host.Name))
		}
		log.Printf("%s: RDM of %s (%s) on host %s accepted", vm.Name, lun.CanonicalName, lun.Uuid, ss.host.Name)
		b.LunUuid = lun.Uuid
		if b.DeviceName == "" {
			b.DeviceName = lun.DevicePath
		}
		if disk.CapacityInKB == 0 && disk.CapacityInBytes == 0 {
			disk.CapacityInBytes = lun.Capacity.Block * int64(lun.Capacity.BlockSize)
			disk.CapacityInKB = disk.CapacityInBytes / 1024
		}
	}
	return nil
}

// hostStorage returns our storage system of the host, or nil.
func hostStorage(ctx *simulator.Context, host types.ManagedObjectReference) *storageSystem {
	h, ok := ctx.Map.Get(host).(*simulator.HostSystem)
	if !ok || h.ConfigManager.StorageSystem == nil {
		return nil
	}
	ss, _ := ctx.Map.Get(*h.ConfigManager.StorageSystem).(*storageSystem)
	return ss
}
