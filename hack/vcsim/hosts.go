// This file exists so a host added at run time (AddHost_Task on a cluster, as an administrator
// grows a cluster) is like the lab's other hosts: the stock simulator gives it the stock
// storage system (shared WWPNs, no iSCSI adapter); here it gets one of ours, with its own IQN,
// that logs in to the real iSCSI target and sees what the target masks to that IQN. And, as
// vCenter does, a cluster's `host` list is reported to property collectors when a host joins
// (AddHost_Task) or goes (Destroy_Task): the stock simulator changes it without telling them, so
// a client following the inventory never saw the new host; a destroyed host also leaves the
// cluster's environment browser, where the stock code kept it. The same for a host moved from one
// cluster into another (MoveInto_Task, the host in maintenance mode): both clusters' host lists
// and the host's parent are reported once the stock task has changed them. Hosts added or moved
// at run time are not kept by -state (persist.go): a restarted simulator has the model's hosts.
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
		forgetHost(ctx, cr.EnvironmentBrowser, ref)
	})
}

// forgetHost takes a destroyed host out of its cluster's environment browser: the stock code
// keeps it there, and the next AddHost_Task on the cluster panics looking it up.
func forgetHost(ctx *simulator.Context, browser *types.ManagedObjectReference, ref types.ManagedObjectReference) {
	if browser == nil {
		return
	}
	env, ok := ctx.Map.Get(*browser).(*simulator.EnvironmentBrowser)
	if !ok {
		return
	}
	ctx.WithLock(env, func() {
		for i := range env.QueryConfigOptionDescriptorResponse.Returnval {
			simulator.RemoveReference(&env.QueryConfigOptionDescriptorResponse.Returnval[i].Host, ref)
		}
	})
}

// installHostJoiner registers the handler; `known` hosts have storage systems already. It also
// hooks MoveInto_Task, so that a host moved between clusters is reported (publishMoved).
func installHostJoiner(m *simulator.Model, tools *iscsiTools, known int) {
	r := m.Map()
	r.AddHandler(&hostJoiner{tools: tools, next: known})
	prev := r.Handler
	r.Handler = func(ctx *simulator.Context, call *simulator.Method) (mo.Reference, types.BaseMethodFault) {
		if prev != nil {
			if h, f := prev(ctx, call); h != nil || f != nil {
				return h, f
			}
		}
		req, ok := call.Body.(*types.MoveInto_Task)
		if !ok || call.This.Type != "ClusterComputeResource" {
			return nil, nil
		}
		for _, ref := range req.Host {
			if host, ok := ctx.Map.Get(ref).(*simulator.HostSystem); ok && host.Parent != nil {
				go publishMoved(ctx, *host.Parent, call.This, ref)
			}
		}
		return nil, nil
	}
}

// publishMoved reports the host lists of clusters `from` and `to` and the parent of `moved` once
// the stock MoveInto_Task has made `to` its parent (a refused move, e.g. a host not in
// maintenance mode, changes nothing and reports nothing).
func publishMoved(ctx *simulator.Context, from, to, moved types.ManagedObjectReference) {
	host, ok := ctx.Map.Get(moved).(*simulator.HostSystem)
	if !ok {
		return
	}
	for try := 0; try < 250; try++ {
		done := false
		ctx.WithLock(host, func() { done = host.Parent != nil && *host.Parent == to })
		if done {
			for _, ref := range []types.ManagedObjectReference{from, to} {
				if cr, ok := ctx.Map.Get(ref).(*simulator.ClusterComputeResource); ok {
					ctx.WithLock(cr, func() { publishHosts(ctx, cr, cr.Host) })
				}
			}
			ctx.WithLock(host, func() { ctx.Update(host, []types.PropertyChange{{Name: "parent", Val: to}}) })
			log.Printf("%s: moved from cluster %s into cluster %s", host.Name, from.Value, to.Value)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	log.Printf("host %s: never moved into cluster %s", host.Name, to.Value)
}
