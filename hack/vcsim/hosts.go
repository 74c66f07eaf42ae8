// This file exists so a host added at run time (AddHost_Task on a cluster, as an administrator
// grows a cluster) is like the lab's other hosts: the stock simulator gives it the stock
// storage system (shared WWPNs, no iSCSI adapter); here it gets one of ours, with its own IQN,
// that logs in to the real iSCSI target and sees what the target masks to that IQN. And, as
// vCenter does, a cluster's `host` list is reported to property collectors when a host joins
// (AddHost_Task) or goes (Destroy_Task): the stock simulator changes it without telling them, so
// a client following the inventory never saw the new host. Hosts added at run time are not kept
// by -state (persist.go): a restarted simulator has the model's hosts.
package main

import (
	"log"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// hostJoiner is a registry handler that gives every HostSystem put in after the lab was set
// up a storage system of ours.
type hostJoiner struct {
	tools *iscsiTools

	mu   sync.Mutex
	next int // the index (WWPN seed) of the next host
}

func (j *hostJoiner) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "LunbridgeHostJoiner", Value: "hosts"}
}

func (j *hostJoiner) PutObject(ctx *simulator.Context, obj mo.Reference) {
	host, ok := obj.(*simulator.HostSystem)
	if !ok || host.ConfigManager.StorageSystem == nil {
		return
	}
	stock, ok := ctx.Map.Get(*host.ConfigManager.StorageSystem).(*simulator.HostStorageSystem)
	if !ok { // ours already
		return
	}
	j.mu.Lock()
	j.next++
	index := j.next
	j.mu.Unlock()
	ss := newStorageSystem(stock, host, index, j.tools)
	ctx.Map.Put(ss)
	ss.publish(nil) // the host is new: no collector has seen it yet
	log.Printf("%s: added at run time, iSCSI %s as %s", host.Name, iscsiDevice, ss.iqn)
	if host.Parent != nil && host.Parent.Type == "ClusterComputeResource" {
		shareDatastores(ctx, host)
		go publishJoined(ctx, *host.Parent, host.Self)
	}
}

// shareDatastores mounts the datastores of the cluster's other hosts on `joined` (the stock
// simulator gives it none): a VM's files stay where they are when it moves onto the host, as
// vMotion within a cluster with shared storage needs.
func shareDatastores(ctx *simulator.Context, joined *simulator.HostSystem) {
	cr, ok := ctx.Map.Get(*joined.Parent).(*simulator.ClusterComputeResource)
	if !ok {
		return
	}
	for _, ref := range cr.Host {
		sibling, ok := ctx.Map.Get(ref).(*simulator.HostSystem)
		if !ok || sibling.Self == joined.Self {
			continue
		}
		for _, dsRef := range sibling.Datastore {
			if containsRef(joined.Datastore, dsRef) {
				continue
			}
			joined.Datastore = append(joined.Datastore, dsRef)
			if ds, ok := ctx.Map.Get(dsRef).(*simulator.Datastore); ok {
				ctx.WithLock(ds, func() {
					mount := types.DatastoreHostMount{Key: joined.Self, MountInfo: types.HostMountInfo{
						AccessMode: string(types.HostMountModeReadWrite), Mounted: types.NewBool(true),
						Accessible: types.NewBool(true),
					}}
					ds.Host = append(ds.Host, mount)
				})
			}
		}
		return
	}
}

// publishJoined reports cluster's host list once AddHost_Task has put `joined` in it (the task
// holds the cluster while it runs, so the lock waits for it).
func publishJoined(ctx *simulator.Context, cluster, joined types.ManagedObjectReference) {
	for try := 0; try < 250; try++ {
		done := false
		if cr, ok := ctx.Map.Get(cluster).(*simulator.ClusterComputeResource); ok {
			ctx.WithLock(cr, func() {
				if containsRef(cr.Host, joined) {
					publishHosts(ctx, cr, cr.Host)
					done = true
				}
			})
		} else {
			return
		}
		if done {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	log.Printf("cluster %s: host %s never joined its host list", cluster.Value, joined.Value)
}

// publishHosts sets and reports cluster cr's host list (the caller holds cr).
func publishHosts(ctx *simulator.Context, cr *simulator.ClusterComputeResource, hosts []types.ManagedObjectReference) {
	list := append([]types.ManagedObjectReference(nil), hosts...)
	ctx.Update(cr, []types.PropertyChange{{Name: "host", Val: list}})
}

func containsRef(refs []types.ManagedObjectReference, ref types.ManagedObjectReference) bool {
	for _, r := range refs {
		if r == ref {
			return true
		}
	}
	return false
}

func (j *hostJoiner) UpdateObject(*simulator.Context, mo.Reference, []types.PropertyChange) {}

// RemoveObject takes a destroyed host out of its cluster's host list, and says so.
func (j *hostJoiner) RemoveObject(ctx *simulator.Context, ref types.ManagedObjectReference) {
	if ref.Type != "HostSystem" {
		return
	}
	host, ok := ctx.Map.Get(ref).(*simulator.HostSystem)
	if !ok || host.Parent == nil || host.Parent.Type != "ClusterComputeResource" {
		return
	}
	cr, ok := ctx.Map.Get(*host.Parent).(*simulator.ClusterComputeResource)
	if !ok {
		return
	}
	ctx.WithLock(cr, func() {
		var kept []types.ManagedObjectReference
		for _, r := range cr.Host {
			if r != ref {
				kept = append(kept, r)
			}
		}
		if len(kept) != len(cr.Host) {
			publishHosts(ctx, cr, kept)
			log.Printf("%s: removed from cluster %s", host.Name, cr.Name)
		}
	})
}

// installHostJoiner registers the handler; `known` hosts have storage systems already.
func installHostJoiner(m *simulator.Model, tools *iscsiTools, known int) {
	m.Map().AddHandler(&hostJoiner{tools: tools, next: known})
}
