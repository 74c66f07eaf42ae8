// Command lunbridge-vcsim is the lab's vCenter: govmomi's simulator (VPX model) whose hosts
// behave like ESXi hosts toward a real iSCSI target. Stock vcsim gives every host the same FC
// WWPNs, no iSCSI adapter and a fixed LUN list, and its RescanAllHba swaps HBA lists, so
// LUN masking per host could not be tested against it. Here every host has its own WWPNs and
// software iSCSI adapter (IQN), a rescan logs in to the configured send targets with that
// IQN (libiscsi tools) and lists exactly the LUNs the target masks to it, and an RDM of a LUN
// the VM's host does not see is refused.
//
// It serves HTTPS on -l until SIGINT/SIGTERM and writes the inventory (URLs, hosts with WWPNs
// and IQNs, VMs with UUIDs and SCSI controllers) as JSON to -inventory once it listens.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/simulator/esx"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
)

func main() {
	listen := flag.String("l", "127.0.0.1:8989", "listen address host:port (port 0 picks one)")
	user := flag.String("username", "", "login user name (empty: any user name and password log in)")
	pass := flag.String("password", "", "login password")
	idle := flag.Duration("session-idle-timeout", 0, "drop sessions idle this long, e.g. 2s (0: never)")
	inventory := flag.String("inventory", "", "write the inventory JSON to this file once listening")
	lsTool := flag.String("iscsi-ls", "iscsi-ls", "libiscsi iscsi-ls program (name in PATH or path)")
	inqTool := flag.String("iscsi-inq", "iscsi-inq", "libiscsi iscsi-inq program")
	capTool := flag.String("iscsi-readcapacity16", "iscsi-readcapacity16", "libiscsi iscsi-readcapacity16 program (optional)")
	toolTimeout := flag.Duration("iscsi-timeout", 15*time.Second, "timeout of one libiscsi command")
	vmsPerHost := flag.Int("vms-per-host", 3, "VMs made on every host")
	stateFile := flag.String("state", "", "keep the devices added to VMs and the hosts' iSCSI setup in this JSON file "+
		"(restored on start when present; see persist.go)")
	saveEvery := flag.Duration("save-every", time.Second, "how often -state is written when it changed")
	flag.Parse()
	log.SetPrefix("lunbridge-vcsim: ")
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	tools := &iscsiTools{ls: lookTool(*lsTool, true), inq: lookTool(*inqTool, true), readcap: lookTool(*capTool, false), timeout: *toolTimeout}

	if host, _, err := net.SplitHostPort(*listen); err == nil {
		esx.HostSystem.Summary.ManagementServerIp = host
	} else {
		log.Fatalf("bad -l %q: %v", *listen, err)
	}
	model := simulator.VPX() // 1 datacenter, 1 cluster with 3 hosts, 1 standalone host
	model.Machine = 0        // VMs are created below, on fixed hosts
	if err := model.Create(); err != nil {
		log.Fatal(err)
	}
	defer model.Remove()

	storage := installStorage(model, tools)
	installRDMGuard(model.Map())
	installRelocateGuard(model.Map())
	model.Map().AddHandler(registryFixups{})
	installHostJoiner(model, tools, len(storage))
	client, err := vim25.NewClient(context.Background(), model.Service) // in-process, no login
	if err != nil {
		log.Fatal(err)
	}
	if err := createVMs(context.Background(), model, client, *vmsPerHost); err != nil {
		log.Fatal(err)
	}
	var keeper *persister
	if *stateFile != "" {
		if keeper, err = newPersister(context.Background(), *stateFile, client, storage); err == nil {
			err = keeper.restore(context.Background())
		}
		if err != nil {
			log.Fatalf("state %s: %v", *stateFile, err)
		}
	}
	if *idle > 0 {
		model.Map().OptionManager().UpdateOptions(&types.UpdateOptions{ChangedValue: []types.BaseOptionValue{
			&types.OptionValue{Key: "config.vmacore.soap.sessionTimeout", Value: idle.String()},
		}})
	}

	u := &url.URL{Host: *listen}
	if *user != "" {
		u.User = url.UserPassword(*user, *pass)
	}
	model.Service.Listen = u
	model.Service.TLS = new(tls.Config)
	model.Service.ServeMux = http.NewServeMux()
	server := model.Service.NewServer()

	sdk := url.URL{Scheme: server.URL.Scheme, Host: server.URL.Host, Path: server.URL.Path}
	log.Printf("serving %s (%d hosts, user %q)", sdk.String(), len(storage), *user)
	if *inventory != "" {
		if err := writeJSON(*inventory, describe(model, storage, sdk.String(), *user)); err != nil {
			log.Fatalf("write inventory: %v", err)
		}
	}

	saving, stopSaving := context.WithCancel(context.Background())
	saverDone := make(chan struct{})
	go func() {
		defer close(saverDone)
		if keeper != nil {
			keeper.run(saving, *saveEvery)
		}
	}()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	s := <-sig
	log.Printf("%v: shutting down", s)
	// no new requests, then the last save: what a client was told is done is in the file
	shutdown, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	if err := server.Config.Shutdown(shutdown); err != nil {
		log.Printf("shutdown: %v (requests still running are cut)", err)
	}
	cancel()
	server.CloseClientConnections()
	stopSaving()
	<-saverDone
	if keeper != nil {
		if err := keeper.save(context.Background()); err != nil {
			log.Printf("saving state to %s failed: %v", *stateFile, err)
		} else {
			log.Printf("state saved to %s", *stateFile)
		}
	}
}

// lookTool resolves a program name through PATH; a missing required tool is fatal, because
// every rescan would fail.
func lookTool(name string, required bool) string {
	p, err := exec.LookPath(name)
	if err != nil {
		if required {
			log.Fatalf("%s not found: %v (install libiscsi-bin or pass its path)", name, err)
		}
		log.Printf("%s not found; LUN sizes will be 0", name)
		return ""
	}
	return p
}
