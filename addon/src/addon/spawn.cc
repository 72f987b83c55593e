// Starting a short-lived helper (the shim's `run`) without fork(2) of the daemon.
// child_process.spawn forks through libuv: the kernel copies the page tables of a ~100 MB
// node process, and the event loop waits for the child's exec (~1.5 ms of the daemon's
// loop per container in a CPU profile of 100 `run --rm`). posix_spawn(3) in glibc clones
// with CLONE_VM | CLONE_VFORK instead, which copies nothing. The child's stdout and
// stderr go to one pipe whose read end is non-blocking; its exit is watched with a pidfd
// on the event loop (pidfd.cc), and reapWithOutput collects the status and what it wrote.
// libuv reaps only the children it started itself (waitpid of each of their pids), so it
// never takes this one's exit status.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "errors.h"
#include "register.h"

extern char** environ;

namespace d2p {

namespace {

// File actions and attributes own resources: destroyed on every path out.
struct SpawnSetup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  bool actionsReady = false;
  bool attrReady = false;
  ~SpawnSetup() {
    if (actionsReady) posix_spawn_file_actions_destroy(&actions);
    if (attrReady) posix_spawnattr_destroy(&attr);
  }
};

// stdin from /dev/null, stdout and stderr into `outputWrite`; signals as a new process
// has them (node ignores SIGPIPE, and ignored signals survive execve(2)).
int Prepare(SpawnSetup* s, int outputWrite) {
  int err = posix_spawn_file_actions_init(&s->actions);
  if (err != 0) return err;
  s->actionsReady = true;
  if ((err = posix_spawn_file_actions_addopen(&s->actions, 0, "/dev/null", O_RDONLY, 0)) != 0) return err;
  if ((err = posix_spawn_file_actions_adddup2(&s->actions, outputWrite, 1)) != 0) return err;
  if ((err = posix_spawn_file_actions_adddup2(&s->actions, outputWrite, 2)) != 0) return err;
  if ((err = posix_spawnattr_init(&s->attr)) != 0) return err;
  s->attrReady = true;
  sigset_t none;
  sigset_t all;
  sigemptyset(&none);
  sigfillset(&all);
  if ((err = posix_spawnattr_setsigmask(&s->attr, &none)) != 0) return err;
  if ((err = posix_spawnattr_setsigdefault(&s->attr, &all)) != 0) return err;
  return posix_spawnattr_setflags(&s->attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
}

// spawnWithOutput(path, args) -> { pid, pidfd, outputFd }: args[0] is argv[0].
Napi::Value SpawnWithOutput(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string file = StringArg(info, 0, "path");
  std::vector<std::string> args = StringArrayArg(info, 1, "args");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int pipeFds[2];
  if (pipe2(pipeFds, O_CLOEXEC) < 0) ThrowErrno(env, errno, "pipe2", file);
  int readEnd = pipeFds[0];
  int writeEnd = pipeFds[1];
  auto closeBoth = [&] {
    close(readEnd);
    close(writeEnd);
  };
  if (fcntl(readEnd, F_SETFL, O_NONBLOCK) < 0) {
    int err = errno;
    closeBoth();
    ThrowErrno(env, err, "fcntl O_NONBLOCK", file);
  }
  pid_t pid;
  int err;
  {
    SpawnSetup setup;
    err = Prepare(&setup, writeEnd);
    if (err == 0) err = posix_spawn(&pid, file.c_str(), &setup.actions, &setup.attr, argv.data(), environ);
  }
  if (err != 0) {
    closeBoth();
    ThrowErrno(env, err, "posix_spawn", file);
  }
  if (close(writeEnd) < 0) {
    int closeErr = errno;
    close(readEnd);
    ThrowErrno(env, closeErr, "close", file);
  }
  // Race-free: the child is not reaped until reapWithOutput, so its pid is still its own.
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    int openErr = errno;
    // Without a pidfd nobody would learn of its exit: reap it here rather than leave a zombie.
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    close(readEnd);
    ThrowErrno(env, openErr, "pidfd_open", file);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", Napi::Number::New(env, pid));
  out.Set("pidfd", Napi::Number::New(env, pidfd));
  out.Set("outputFd", Napi::Number::New(env, readEnd));
  return out;
}

// reapWithOutput(pid, outputFd) -> { code, signal, output }: for a child whose pidfd
// said it exited. Reads what is in the pipe (all of it once every writer is gone; a
// descendant still holding the pipe can not make this wait), then closes it.
Napi::Value ReapWithOutput(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  pid_t pid = static_cast<pid_t>(IntArg(info, 0, "pid"));
  int fd = static_cast<int>(IntArg(info, 1, "outputFd"));
  std::string output;
  char buffer[4096];
  for (;;) {
    ssize_t n = read(fd, buffer, sizeof buffer);
    if (n > 0) {
      output.append(buffer, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) {
      int err = errno;
      close(fd);
      ThrowErrno(env, err, "read", "output of pid " + std::to_string(pid));
    }
    break;
  }
  if (close(fd) < 0) ThrowErrno(env, errno, "close", "output of pid " + std::to_string(pid));
  siginfo_t child{};
  while (waitid(P_PID, static_cast<id_t>(pid), &child, WEXITED) < 0) {
    if (errno != EINTR) ThrowErrno(env, errno, "waitid", "pid " + std::to_string(pid));
  }
  Napi::Object out = Napi::Object::New(env);
  bool exited = child.si_code == CLD_EXITED;
  out.Set("code", exited ? Napi::Number::New(env, child.si_status) : env.Null());
  out.Set("signal", exited ? env.Null() : Napi::Number::New(env, child.si_status));
  out.Set("output", Napi::String::New(env, output));
  return out;
}

}  // namespace

void RegisterSpawn(Napi::Env env, Napi::Object exports) {
  exports.Set("spawnWithOutput", Napi::Function::New(env, SpawnWithOutput, "spawnWithOutput"));
  exports.Set("reapWithOutput", Napi::Function::New(env, ReapWithOutput, "reapWithOutput"));
}

}  // namespace d2p
