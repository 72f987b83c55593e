// The Container's finalizer in a module of its own: whoever creates Containers (the
// Service controller, `d2p run`) puts it on at creation, which saves the Container
// reconciler a write (and the reconcile that write triggers) before it can start each
// one, and importing the Container controller for a constant would load all of it.
export const CONTAINER_FINALIZER = 'd2p.dev/container-cleanup';
