// The Container's finalizer in a module of its own: the Service controller puts it on the
// Containers it creates, which saves the Container reconciler a write (and the reconcile
// that write triggers) before it can start each one, and importing the Container
// controller for a constant would load all of it.
export const CONTAINER_FINALIZER = 'd2p.dev/container-cleanup';
