// d2p-init: placeholder until the init helper writes it.
int main() { return 0; }
