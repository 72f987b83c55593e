// d2p-shim: creates one container from an OCI bundle and stays as its supervisor.
int main() { return 0; }
