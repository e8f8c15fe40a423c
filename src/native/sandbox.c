/*
 * What a sandbox's init (src/sandbox/init.ts) needs from the kernel and Node
 * cannot do: mount(2), sethostname(2), waitpid(2) on children libuv does not
 * know, terminal process groups (tcsetpgrp), and starting the sandboxed
 * program with fork + setpgid + tcsetpgrp + unshare(CLONE_NEWUSER) + execve.
 *
 * Why the program is started here and not with child_process.spawn: it must
 *  - run in its own process group that owns the terminal (job control: Ctrl-C,
 *    Ctrl-Z and `less` reading the tty reach the program, not warren), and
 *    Node can neither setpgid nor tcsetpgrp a child before it executes;
 *  - run with the caller's uid/gid rather than as root of the sandbox's user
 *    namespace: it enters a nested user namespace that maps the caller's ids
 *    onto that root (user_namespaces(7), "User and group ID mappings"), so it
 *    holds no capability over the sandbox's network or mounts;
 *  - have a pid libuv does not reap, so the init (pid 1 of its pid namespace)
 *    can reap every process of the namespace itself, orphans included.
 * The child of fork() runs only async-signal-safe calls before execve, since
 * Node is multi-threaded (fork(2), signal-safety(7)); everything it needs is
 * prepared in the parent.
 */
#define _GNU_SOURCE
#include "warren.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

/* ---- small helpers ---- */

/* Reads a JS string into a malloc'd C string; NULL after throwing. */
static char *arg_string(napi_env env, napi_value value, const char *fn, const char *name) {
  size_t length = 0;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &length) != napi_ok) {
    warren_throw_type(env, fn, name, "a string");
    return NULL;
  }
  char *text = malloc(length + 1);
  if (text == NULL) {
    warren_throw_errno(env, ENOMEM, "malloc", NULL);
    return NULL;
  }
  if (napi_get_value_string_utf8(env, value, text, length + 1, &length) != napi_ok) {
    free(text);
    warren_throw_napi_failure(env, "reading a string");
    return NULL;
  }
  if (strlen(text) != length) {
    free(text);
    warren_throw_range(env, fn, name, "must not contain NUL characters");
    return NULL;
  }
  return text;
}

/* A string, or NULL for null/undefined. `*ok` false after throwing. */
static char *arg_optional_string(napi_env env, napi_value value, const char *fn, const char *name,
                                 bool *ok) {
  *ok = true;
  if (warren_is_nullish(env, value)) return NULL;
  char *text = arg_string(env, value, fn, name);
  if (text == NULL) *ok = false;
  return text;
}

static void free_string_list(char **list) {
  if (list == NULL) return;
  for (char **item = list; *item != NULL; item++) free(*item);
  free(list);
}

/* Reads an array of strings into a NULL-terminated malloc'd list. */
static char **arg_string_list(napi_env env, napi_value value, const char *fn, const char *name,
                              bool allow_empty) {
  bool is_array = false;
  if (napi_is_array(env, value, &is_array) != napi_ok || !is_array) {
    warren_throw_type(env, fn, name, "an array of strings");
    return NULL;
  }
  uint32_t count;
  if (napi_get_array_length(env, value, &count) != napi_ok) {
    warren_throw_napi_failure(env, "reading an array's length");
    return NULL;
  }
  if (count == 0 && !allow_empty) {
    warren_throw_range(env, fn, name, "must not be empty");
    return NULL;
  }
  char **list = calloc((size_t)count + 1, sizeof *list);
  if (list == NULL) {
    warren_throw_errno(env, ENOMEM, "calloc", NULL);
    return NULL;
  }
  for (uint32_t i = 0; i < count; i++) {
    napi_value element;
    if (napi_get_element(env, value, i, &element) != napi_ok) {
      free_string_list(list);
      warren_throw_napi_failure(env, "reading an array element");
      return NULL;
    }
    list[i] = arg_string(env, element, fn, name);
    if (list[i] == NULL) {
      free_string_list(list);
      return NULL;
    }
  }
  return list;
}

/* ---- mount(source, target, fstype, flags, data) ---- */

static napi_value do_mount(napi_env env, napi_callback_info info) {
  static const char fn[] = "mount";
  size_t argc = 5;
  napi_value argv[5];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool ok_source = false, ok_type = false, ok_data = false;
  int64_t flags;
  char *target = arg_string(env, argv[1], fn, "target");
  if (target == NULL) return NULL;
  char *source = arg_optional_string(env, argv[0], fn, "source", &ok_source);
  char *fstype = ok_source ? arg_optional_string(env, argv[2], fn, "fstype", &ok_type) : NULL;
  char *data =
      ok_source && ok_type ? arg_optional_string(env, argv[4], fn, "data", &ok_data) : NULL;
  napi_value result = NULL;
  if (ok_source && ok_type && ok_data &&
      warren_arg_int64(env, argv[3], fn, "flags", 0, UINT32_MAX, &flags)) {
    if (mount(source, target, fstype, (unsigned long)flags, data) != 0) {
      warren_throw_errno(env, errno, "mount", target);
    }
  }
  free(target);
  free(source);
  free(fstype);
  free(data);
  return result;
}

/* ---- bindMount(source, target, readOnly) ---- */

static napi_value bind_mount(napi_env env, napi_callback_info info) {
  static const char fn[] = "bindMount";
  size_t argc = 3;
  napi_value argv[3];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool read_only = false;
  if (napi_get_value_bool(env, argv[2], &read_only) != napi_ok) {
    return warren_throw_type(env, fn, "readOnly", "a boolean");
  }
  char *source = arg_string(env, argv[0], fn, "source");
  if (source == NULL) return NULL;
  char *target = arg_string(env, argv[1], fn, "target");
  if (target == NULL) {
    free(source);
    return NULL;
  }
  if (mount(source, target, NULL, MS_BIND, NULL) != 0) {
    warren_throw_errno(env, errno, "mount", target);
  } else if (read_only) {
    /* A bind mount takes the read-only flag only on a remount. In a user
     * namespace the remount must keep the flags locked on the source mount
     * (nosuid, nodev, noexec, ...), or it fails with EPERM
     * (mount_namespaces(7), "restrictions on mount namespaces"). */
    struct statvfs stats;
    if (statvfs(target, &stats) != 0) {
      warren_throw_errno(env, errno, "statvfs", target);
    } else {
      unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY;
      if (stats.f_flag & ST_NOSUID) flags |= MS_NOSUID;
      if (stats.f_flag & ST_NODEV) flags |= MS_NODEV;
      if (stats.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
      if (stats.f_flag & ST_NOATIME) flags |= MS_NOATIME;
      if (stats.f_flag & ST_NODIRATIME) flags |= MS_NODIRATIME;
      if (stats.f_flag & ST_RELATIME) flags |= MS_RELATIME;
      if (mount(NULL, target, NULL, flags, NULL) != 0) {
        warren_throw_errno(env, errno, "mount", target);
      }
    }
  }
  free(source);
  free(target);
  return NULL;
}

/* ---- sethostname(name) ---- */

static napi_value set_hostname(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char *name = arg_string(env, argv[0], "sethostname", "name");
  if (name == NULL) return NULL;
  if (sethostname(name, strlen(name)) != 0) warren_throw_errno(env, errno, "sethostname", name);
  free(name);
  return NULL;
}

/* ---- terminal process groups ---- */

static napi_value get_pgrp(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  NAPI_CALL(env, napi_create_int32(env, getpgrp(), &result));
  return result;
}

/* tcgetpgrp(fd) -> pgrp; throws ENOTTY when fd is not our controlling tty. */
static napi_value tc_getpgrp(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  if (!warren_arg_fd(env, argv[0], "tcgetpgrp", "fd", &fd)) return NULL;
  pid_t pgrp = tcgetpgrp(fd);
  if (pgrp < 0) return warren_throw_errno(env, errno, "tcgetpgrp", NULL);
  napi_value result;
  NAPI_CALL(env, napi_create_int32(env, pgrp, &result));
  return result;
}

/* tcsetpgrp(fd, pgrp): makes pgrp the terminal's foreground group. SIGTTOU is
 * blocked around the call, as shells do, or a caller in a background group
 * would be stopped by it (termios(3), tcsetpgrp(3)). Blocking it in the
 * calling thread is enough: the tty layer looks at the caller's own mask. */
static napi_value tc_setpgrp(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  int32_t pgrp;
  if (!warren_arg_fd(env, argv[0], "tcsetpgrp", "fd", &fd) ||
      !warren_arg_int32(env, argv[1], "tcsetpgrp", "pgrp", 1, INT32_MAX, &pgrp)) {
    return NULL;
  }
  sigset_t block, previous;
  sigemptyset(&block);
  sigaddset(&block, SIGTTOU);
  pthread_sigmask(SIG_BLOCK, &block, &previous);
  int outcome = tcsetpgrp(fd, pgrp);
  int err = errno;
  pthread_sigmask(SIG_SETMASK, &previous, NULL);
  if (outcome != 0) return warren_throw_errno(env, err, "tcsetpgrp", NULL);
  return NULL;
}

/* ---- waitChild(pid, untraced) -> null | { pid, exitCode, signal, stopped } ---- */

static napi_value wait_child(napi_env env, napi_callback_info info) {
  static const char fn[] = "waitChild";
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t pid;
  bool untraced = false;
  if (!warren_arg_int32(env, argv[0], fn, "pid", -1, INT32_MAX, &pid)) return NULL;
  if (napi_get_value_bool(env, argv[1], &untraced) != napi_ok) {
    return warren_throw_type(env, fn, "untraced", "a boolean");
  }
  int status = 0;
  pid_t changed;
  do {
    changed = waitpid(pid, &status, WNOHANG | (untraced ? WUNTRACED : 0));
  } while (changed < 0 && errno == EINTR);
  /* ECHILD (no children left) is thrown: for pid 1 of a namespace it means
   * the namespace is empty. */
  if (changed < 0) return warren_throw_errno(env, errno, "waitpid", NULL);
  napi_value result;
  if (changed == 0) {
    NAPI_CALL(env, napi_get_null(env, &result));
    return result;
  }
  int32_t exit_code = -1, signal_number = 0;
  bool stopped = false;
  if (WIFEXITED(status)) {
    exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    signal_number = WTERMSIG(status);
  } else if (WIFSTOPPED(status)) {
    signal_number = WSTOPSIG(status);
    stopped = true;
  }
  napi_value value;
  NAPI_CALL(env, napi_create_object(env, &result));
  NAPI_CALL(env, napi_create_int32(env, changed, &value));
  NAPI_CALL(env, napi_set_named_property(env, result, "pid", value));
  NAPI_CALL(env, napi_create_int32(env, exit_code, &value));
  NAPI_CALL(env, napi_set_named_property(env, result, "exitCode", value));
  NAPI_CALL(env, napi_create_int32(env, signal_number, &value));
  NAPI_CALL(env, napi_set_named_property(env, result, "signal", value));
  NAPI_CALL(env, napi_get_boolean(env, stopped, &value));
  NAPI_CALL(env, napi_set_named_property(env, result, "stopped", value));
  return result;
}

/* ---- spawnProgram(paths, argv, envp, cwd, uid, gid, terminalFd) -> pid ---- */

/* What the child reports over the error pipe when it cannot execute. */
typedef struct {
  int32_t stage;
  int32_t err;
} spawn_failure;

enum {
  STAGE_SETPGID,
  STAGE_TCSETPGRP,
  STAGE_UNSHARE,
  STAGE_SETGROUPS,
  STAGE_UID_MAP,
  STAGE_GID_MAP,
  STAGE_CHDIR,
  STAGE_EXECVE,
};
static const char *const stage_names[] = {
    "setpgid", "tcsetpgrp", "unshare", "write /proc/self/setgroups",
    "write /proc/self/uid_map", "write /proc/self/gid_map", "chdir", "execve",
};

/* Async-signal-safe: open + write + close. Returns 0 or errno. */
static int write_proc_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  size_t length = strlen(text);
  int err = write(fd, text, length) == (ssize_t)length ? 0 : errno;
  close(fd);
  return err;
}

/* Runs in the child of fork(): async-signal-safe calls only. Never returns. */
static void __attribute__((noreturn))
run_child(int error_pipe, char *const *paths, char *const *argv, char *const *envp, const char *cwd,
          const char *uid_map, const char *gid_map, int terminal_fd) {
  spawn_failure failure = {0, 0};

  /* Node ignores SIGPIPE and libuv installs handlers; an ignored disposition
   * survives execve, so restore every default (handlers reset themselves). */
  struct sigaction defaults;
  memset(&defaults, 0, sizeof defaults);
  defaults.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &defaults, NULL);
  }

  /* Own process group, made the terminal's foreground group when the
   * sandbox has one: as a shell starts a foreground job. Every signal is
   * still blocked (the parent blocked them around fork), SIGTTOU included. */
  if (setpgid(0, 0) != 0) {
    failure = (spawn_failure){STAGE_SETPGID, errno};
    goto fail;
  }
  if (terminal_fd >= 0 && tcsetpgrp(terminal_fd, getpid()) != 0) {
    failure = (spawn_failure){STAGE_TCSETPGRP, errno};
    goto fail;
  }

  if (uid_map != NULL) {
    /* The nested user namespace: "UID 0 1" maps the caller's uid onto the
     * sandbox's root (this process's uid), so after execve the program is
     * the caller, without capabilities. setgroups must be denied before an
     * unprivileged gid_map write (user_namespaces(7)). */
    if (unshare(CLONE_NEWUSER) != 0) {
      failure = (spawn_failure){STAGE_UNSHARE, errno};
      goto fail;
    }
    int err = write_proc_file("/proc/self/setgroups", "deny");
    if (err != 0) {
      failure = (spawn_failure){STAGE_SETGROUPS, err};
      goto fail;
    }
    if ((err = write_proc_file("/proc/self/uid_map", uid_map)) != 0) {
      failure = (spawn_failure){STAGE_UID_MAP, err};
      goto fail;
    }
    if ((err = write_proc_file("/proc/self/gid_map", gid_map)) != 0) {
      failure = (spawn_failure){STAGE_GID_MAP, err};
      goto fail;
    }
  }
  if (cwd != NULL && chdir(cwd) != 0) {
    failure = (spawn_failure){STAGE_CHDIR, errno};
    goto fail;
  }

  /* Node marks its own stdin/stdout/stderr close-on-exec (libuv dup2()s
   * fresh ones for child_process children); the program must inherit them. */
  for (int fd = 0; fd <= 2; fd++) {
    int flags = fcntl(fd, F_GETFD);
    if (flags >= 0 && (flags & FD_CLOEXEC)) fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC);
  }
  /* Only stdin, stdout and stderr reach the program: every other inherited
   * fd (the init's control socket above all) becomes close-on-exec. */
  if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    for (int fd = 3; fd < 4096; fd++) {
      int flags = fcntl(fd, F_GETFD);
      if (flags >= 0 && !(flags & FD_CLOEXEC)) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    }
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);

  /* execvpe's search, done over candidates the parent built from PATH:
   * skip ENOENT/ENOTDIR, remember EACCES, stop at anything else. */
  int first_error = ENOENT;
  for (char *const *path = paths; *path != NULL; path++) {
    execve(*path, argv, envp);
    int err = errno;
    if (err == EACCES) {
      first_error = EACCES;
    } else if (err != ENOENT && err != ENOTDIR) {
      first_error = err;
      break;
    }
  }
  failure = (spawn_failure){STAGE_EXECVE, first_error};

fail:;
  ssize_t ignored = write(error_pipe, &failure, sizeof failure);
  (void)ignored;
  _exit(127);
}

static napi_value spawn_program(napi_env env, napi_callback_info info) {
  static const char fn[] = "spawnProgram";
  size_t argc = 7;
  napi_value argv[7];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t uid, gid;
  int32_t terminal_fd;
  if (!warren_arg_int64(env, argv[4], fn, "uid", -1, UINT32_MAX - 1, &uid) ||
      !warren_arg_int64(env, argv[5], fn, "gid", -1, UINT32_MAX - 1, &gid) ||
      !warren_arg_int32(env, argv[6], fn, "terminalFd", -1, INT32_MAX, &terminal_fd)) {
    return NULL;
  }
  if ((uid < 0) != (gid < 0)) {
    return warren_throw_range(env, fn, "gid", "must be -1 exactly when uid is -1");
  }
  bool ok_cwd;
  char **paths = NULL, **program_argv = NULL, **envp = NULL, *cwd = NULL;
  napi_value result = NULL;
  if ((paths = arg_string_list(env, argv[0], fn, "paths", false)) == NULL ||
      (program_argv = arg_string_list(env, argv[1], fn, "argv", false)) == NULL ||
      (envp = arg_string_list(env, argv[2], fn, "envp", true)) == NULL) {
    goto done;
  }
  cwd = arg_optional_string(env, argv[3], fn, "cwd", &ok_cwd);
  if (!ok_cwd) goto done;

  /* Everything the child needs is formatted before fork. */
  char uid_map[48], gid_map[48];
  snprintf(uid_map, sizeof uid_map, "%lld 0 1\n", (long long)uid);
  snprintf(gid_map, sizeof gid_map, "%lld 0 1\n", (long long)gid);

  int error_pipe[2];
  if (pipe2(error_pipe, O_CLOEXEC) != 0) {
    warren_throw_errno(env, errno, "pipe2", NULL);
    goto done;
  }
  /* Block every signal across fork so no Node/libuv handler runs in the
   * child before it has reset the dispositions. */
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  pid_t pid = fork();
  if (pid == 0) {
    close(error_pipe[0]);
    run_child(error_pipe[1], paths, program_argv, envp, cwd, uid < 0 ? NULL : uid_map,
              gid < 0 ? NULL : gid_map, terminal_fd);
  }
  int fork_error = errno;
  pthread_sigmask(SIG_SETMASK, &previous, NULL);
  close(error_pipe[1]);
  if (pid < 0) {
    close(error_pipe[0]);
    warren_throw_errno(env, fork_error, "fork", NULL);
    goto done;
  }

  /* The pipe closes on a successful execve (O_CLOEXEC) or carries the
   * failure. The child does a handful of syscalls, so this wait is short. */
  spawn_failure failure;
  ssize_t got;
  do {
    got = read(error_pipe[0], &failure, sizeof failure);
  } while (got < 0 && errno == EINTR);
  close(error_pipe[0]);
  if (got == (ssize_t)sizeof failure) {
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    int stage = failure.stage >= 0 && failure.stage <= STAGE_EXECVE ? failure.stage : STAGE_EXECVE;
    const char *detail = stage == STAGE_EXECVE ? program_argv[0]
                         : stage == STAGE_CHDIR ? (cwd != NULL ? cwd : "")
                                                : NULL;
    warren_throw_errno(env, failure.err, stage_names[stage], detail);
    goto done;
  }
  if (napi_create_int32(env, pid, &result) != napi_ok) {
    warren_throw_napi_failure(env, "returning the pid");
    result = NULL;
  }

done:
  free_string_list(paths);
  free_string_list(program_argv);
  free_string_list(envp);
  free(cwd);
  return result;
}

bool warren_init_sandbox(napi_env env, napi_value exports) {
  return warren_export_function(env, exports, "mount", do_mount) &&
         warren_export_function(env, exports, "bindMount", bind_mount) &&
         warren_export_function(env, exports, "sethostname", set_hostname) &&
         warren_export_function(env, exports, "getpgrp", get_pgrp) &&
         warren_export_function(env, exports, "tcgetpgrp", tc_getpgrp) &&
         warren_export_function(env, exports, "tcsetpgrp", tc_setpgrp) &&
         warren_export_function(env, exports, "waitChild", wait_child) &&
         warren_export_function(env, exports, "spawnProgram", spawn_program) &&
         warren_export_int32(env, exports, "MS_RDONLY", MS_RDONLY) &&
         warren_export_int32(env, exports, "MS_NOSUID", MS_NOSUID) &&
         warren_export_int32(env, exports, "MS_NODEV", MS_NODEV) &&
         warren_export_int32(env, exports, "MS_NOEXEC", MS_NOEXEC) &&
         warren_export_int32(env, exports, "MS_REMOUNT", MS_REMOUNT) &&
         warren_export_int32(env, exports, "MS_BIND", MS_BIND) &&
         warren_export_int32(env, exports, "MS_REC", MS_REC) &&
         warren_export_int32(env, exports, "MS_PRIVATE", MS_PRIVATE);
}
