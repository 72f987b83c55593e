// `d2p-shim exec`: runs one more process inside a running container (docker exec).
#pragma once

namespace shim {
int cmd_exec(int argc, char** argv);
}
