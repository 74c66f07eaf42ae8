// This file exists to fix, as objects enter the registry, two stock simulator values that
// pyvmomi 9 cannot read (and, as a relocated VM changes, the hosts' VM lists: relocate.go):
//   - tasks are named after the simulator's functions (info.name "ReconfigVm") while vCenter
//     sends the method that made the task ("ReconfigVM_Task"); pyVim.task.WaitForTask fails
//     with "'UnknownManagedMethod' object has no attribute 'info'" whenever it sees a task
//     still running, so tests were flaky;
//   - VMs have empty enums (runtime.faultToleranceState, runtime.recordReplayState,
//     guestHeartbeatStatus), so vm.runtime and vm.summary raised AttributeError.
package main

import (
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// wsdlTaskNames maps the simulator's descriptionId to vCenter's info.name. Tasks not listed
// get no name (vCenter leaves some unnamed too), which pyvmomi reads as None.
var wsdlTaskNames = map[string]string{
	"VirtualMachine.reconfigVm":                 "ReconfigVM_Task",
	"VirtualMachine.powerOn":                    "PowerOnVM_Task",
	"VirtualMachine.powerOff":                   "PowerOffVM_Task",
	"VirtualMachine.reset":                      "ResetVM_Task",
	"VirtualMachine.destroy":                    "Destroy_Task",
	"VirtualMachine.cloneVm":                    "CloneVM_Task",
	"VirtualMachine.relocateVm":                 "RelocateVM_Task",
	"VirtualMachine.customizeVm":                "CustomizeVM_Task",
	"VirtualMachine.upgradeVm":                  "UpgradeVM_Task",
	"VirtualMachine.createSnapshotEx":           "CreateSnapshotEx_Task",
	"VirtualMachine.removeSnapshot":             "RemoveSnapshot_Task",
	"VirtualMachine.revertToSnapshot":           "RevertToSnapshot_Task",
	"VirtualMachine.RemoveAllSnapshots":         "RemoveAllSnapshots_Task",
	"VirtualMachine.attachDisk":                 "AttachDisk_Task",
	"VirtualMachine.detachDisk":                 "DetachDisk_Task",
	"VirtualMachine.rename":                     "Rename_Task",
	"Folder.createVm":                           "CreateVM_Task",
	"Folder.registerVm":                         "RegisterVM_Task",
	"Folder.destroy":                            "Destroy_Task",
	"Folder.moveIntoFolder":                     "MoveIntoFolder_Task",
	"HostSystem.enterMaintenanceMode":           "EnterMaintenanceMode_Task",
	"HostSystem.exitMaintenanceMode":            "ExitMaintenanceMode_Task",
	"HostSystem.disconnectHost":                 "DisconnectHost_Task",
	"HostSystem.reconnectHost":                  "ReconnectHost_Task",
	"HostSystem.destroy":                        "Destroy_Task",
	"ClusterComputeResource.moveInto":           "MoveInto_Task",
	"ClusterComputeResource.reconfigureCluster": "ReconfigureComputeResource_Task",
	"Datacenter.powerOnMultiVM":                 "PowerOnMultiVM_Task",
	"Datastore.destroy":                         "Destroy_Task",
}

// registryFixups is a registry handler that fixes tasks and VMs as they are put in.
type registryFixups struct{}

func (registryFixups) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "LunbridgeFixups", Value: "fixups"}
}

func (registryFixups) PutObject(_ *simulator.Context, obj mo.Reference) {
	switch o := obj.(type) {
	case *simulator.Task:
		o.Info.Name = wsdlTaskNames[o.Info.DescriptionId]
	case *simulator.VirtualMachine:
		fillEnums(o)
	}
}

// UpdateObject moves a relocated VM between the hosts' VM lists (relocate.go says why).
func (registryFixups) UpdateObject(ctx *simulator.Context, obj mo.Reference, changes []types.PropertyChange) {
	vm, ok := obj.(*mo.VirtualMachine)
	if !ok {
		return
	}
	for _, change := range changes {
		if change.Name == "runtime.host" {
			moveVM(ctx, vm)
			return
		}
	}
}

func (registryFixups) RemoveObject(*simulator.Context, types.ManagedObjectReference) {}

// fillEnums sets the enum properties the stock simulator leaves empty to vCenter's values.
func fillEnums(vm *simulator.VirtualMachine) {
	vm.Runtime.FaultToleranceState = types.VirtualMachineFaultToleranceStateNotConfigured
	vm.Runtime.RecordReplayState = types.VirtualMachineRecordReplayStateInactive
	vm.Summary.Runtime = vm.Runtime
	vm.GuestHeartbeatStatus = types.ManagedEntityStatusGray
	vm.Summary.QuickStats.GuestHeartbeatStatus = types.ManagedEntityStatusGray
}
