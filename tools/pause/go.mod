// The pod sandbox ("pause") image's only program, for the test node's containerd: no registry is
// reachable, so the sandbox image is built here. Built by tools/build-control-plane.sh.
module groupbinder.dev/tools/pause

go 1.26.0
