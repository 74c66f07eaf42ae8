// This file exists because the stock simulator relocates a VM to any host, while vCenter
// refuses to move a VM whose raw device mapping names a LUN the destination host cannot see:
// vMotion, DRS and HA work only when every host a VM may run on sees its RDMs' LUNs, which is
// what lunbridge's cluster scope keeps. A registry handler hook checks a RelocateVM_Task's
// destination before the stock relocate runs, the way rdm.go checks a ReconfigVM_Task.
//
// It also keeps the hosts' VM lists (HostSystem.vm) right across a relocation: the stock code
// removes the destination from its own list instead of the VM from the source's, so the VM
// stayed listed on the host it left and never on the one it runs on.
package main

import (
	"fmt"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// installRelocateGuard checks every RelocateVM_Task that names a host (rdm.go's guardVM).
func installRelocateGuard(r *simulator.Registry) {
	guardVM(r, "RelocateVM_Task",
		func(ctx *simulator.Context, vm *simulator.VirtualMachine, body any) types.BaseMethodFault {
			if req, ok := body.(*types.RelocateVM_Task); ok && req.Spec.Host != nil {
				return checkRelocate(ctx, vm, *req.Spec.Host)
			}
			return nil
		},
		func(vm *simulator.VirtualMachine, f types.BaseMethodFault) mo.Reference {
			return &refusedRelocation{VirtualMachine: vm, fault: f}
		})
}

// refusedRelocation answers one RelocateVM_Task of a VM with a task that fails with fault.
type refusedRelocation struct {
	*simulator.VirtualMachine
	fault types.BaseMethodFault
}

func (r *refusedRelocation) RelocateVMTask(ctx *simulator.Context, _ *types.RelocateVM_Task) soap.HasFault {
	ctx.Session.Remove(ctx, r.Self)
	task := simulator.CreateTask(r.VirtualMachine, "relocateVm", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		return nil, r.fault
	})
	return &methods.RelocateVM_TaskBody{Res: &types.RelocateVM_TaskResponse{Returnval: task.Run(ctx)}}
}

func refusal(fault types.BaseMethodFault, msg string) types.BaseMethodFault {
	fault.GetMethodFault().FaultMessage = []types.LocalizableMessage{{Key: "lunbridge.vcsim.relocate", Message: msg}}
	return fault
}

// checkRelocate refuses a destination that does not exist or is not connected (the stock
// relocate would panic on the first), and one that does not see the LUN of every RDM of vm.
func checkRelocate(ctx *simulator.Context, vm *simulator.VirtualMachine, dest types.ManagedObjectReference) types.BaseMethodFault {
	host, ok := ctx.Map.Get(dest).(*simulator.HostSystem)
	if !ok {
		return refusal(&types.ManagedObjectNotFound{Obj: dest}, fmt.Sprintf("no host %s", dest.Value))
	}
	if host.Runtime.ConnectionState != types.HostSystemConnectionStateConnected || host.Runtime.InMaintenanceMode {
		return refusal(&types.InvalidHostState{Host: &host.Self}, fmt.Sprintf(
			"host %s is %s%s", host.Name, host.Runtime.ConnectionState, map[bool]string{true: ", in maintenance mode"}[host.Runtime.InMaintenanceMode]))
	}
	ss := hostStorage(ctx, dest)
	for _, device := range vm.Config.Hardware.Device {
		disk, ok := device.(*types.VirtualDisk)
		if !ok {
			continue
		}
		b, ok := disk.Backing.(*types.VirtualDiskRawDiskMappingVer1BackingInfo)
		if !ok {
			continue
		}
		if ss != nil {
			if _, found := ss.visibleLun(b.DeviceName, b.LunUuid); found {
				continue
			}
		}
		msg := fmt.Sprintf("the RDM %s of %s names LUN %s (lunUuid %q), which host %s does not see",
			label(disk), vm.Name, b.DeviceName, b.LunUuid, host.Name)
		cause := &types.InvalidDeviceBacking{}
		cause.FaultMessage = []types.LocalizableMessage{{Key: "lunbridge.vcsim.relocate", Message: msg}}
		f := &types.RDMPointsToInaccessibleDisk{}
		f.Device = label(disk)
		f.Backing = b.DeviceName
		f.Connected = true
		f.Fault = types.LocalizedMethodFault{Fault: cause, LocalizedMessage: msg}
		return refusal(f, msg)
	}
	return nil
}

func label(disk *types.VirtualDisk) string {
	if disk.DeviceInfo != nil {
		return disk.DeviceInfo.GetDescription().Label
	}
	return fmt.Sprintf("disk %d", disk.Key)
}

// moveVM lists vm on the host it now runs on and on no other (a registry update hook: the
// relocate task holds the VM's lock, and the hosts are locked after it, as the stock code does).
func moveVM(ctx *simulator.Context, vm *mo.VirtualMachine) {
	if vm.Runtime.Host == nil {
		return
	}
	dest := *vm.Runtime.Host
	for _, entity := range ctx.Map.All("HostSystem") {
		host, ok := entity.(*simulator.HostSystem)
		if !ok {
			continue
		}
		ctx.WithLock(host, func() {
			listed := simulator.FindReference(host.Vm, vm.Self) != nil
			if listed == (host.Self == dest) {
				return
			}
			vms := append([]types.ManagedObjectReference(nil), host.Vm...)
			if listed {
				simulator.RemoveReference(&vms, vm.Self)
			} else {
				vms = append(vms, vm.Self)
			}
			ctx.Update(host, []types.PropertyChange{{Name: "vm", Val: vms}})
		})
	}
}
