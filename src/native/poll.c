/*
 * watch(fd, callback): readiness of a raw fd (TUN device, addon UDP socket)
 * on Node's own event loop, via uv_poll_t.
 *
 * A TUN fd has no libuv handle type in Node (net.Socket refuses character
 * devices, fs.read ties up a thread-pool thread), so the addon polls it and
 * JavaScript drains it with tunRead/udpRecv when told it is readable.
 * uv_poll is level-triggered on Linux (epoll without EPOLLET): the callback
 * keeps firing while unread data remains.
 *
 * Lifetime: the poll handle runs until close(), independent of the JS Watcher
 * object (like any Node handle). The C struct is freed once both the handle is
 * closed and the Watcher object was garbage-collected.
 */
#include "warren.h"

#include <errno.h>
#include <stdlib.h>
#include <uv.h>

typedef struct {
  uv_poll_t poll; /* first member: a uv_poll_t* is a watcher* */
  napi_env env;
  napi_ref callback;
  napi_async_context async_context;
  bool closing;           /* uv_close() was called */
  bool in_callback;       /* inside napi_make_callback with async_context */
  bool handle_closed;     /* its close callback ran */
  bool wrapper_finalized; /* the JS Watcher object is gone */
} watcher;

typedef struct {
  napi_ref watcher_constructor;
} instance_data;

static void free_if_unused(watcher *w) {
  if (w->handle_closed && w->wrapper_finalized) free(w);
}

static void on_handle_closed(uv_handle_t *handle) {
  watcher *w = (watcher *)handle;
  w->handle_closed = true;
  free_if_unused(w);
}

static void on_wrapper_finalized(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  watcher *w = data;
  w->wrapper_finalized = true;
  free_if_unused(w);
}

/* Environment teardown (worker exit, process exit) with the watcher still
 * open: close the handle so the loop can end. No N-API calls here. */
static void on_env_cleanup(void *data) {
  watcher *w = data;
  if (w->closing) return;
  w->closing = true;
  uv_close((uv_handle_t *)&w->poll, on_handle_closed);
}

static void on_poll(uv_poll_t *handle, int status, int events) {
  (void)events;
  watcher *w = (watcher *)handle;
  if (w->closing) return;
  napi_env env = w->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value callback, receiver, argument;
  if (napi_get_reference_value(env, w->callback, &callback) == napi_ok && callback != NULL &&
      napi_get_global(env, &receiver) == napi_ok &&
      napi_create_int32(env, status, &argument) == napi_ok) {
    /* napi_make_callback (not napi_call_function): it enters the async
     * context and drains process.nextTick and microtasks afterwards, as Node's
     * own handle callbacks do. */
    w->in_callback = true;
    napi_status outcome =
        napi_make_callback(env, w->async_context, receiver, callback, 1, &argument, NULL);
    w->in_callback = false;
    if (w->closing && w->async_context != NULL) {
      /* close() ran inside the callback and left this to us. */
      napi_async_destroy(env, w->async_context);
      w->async_context = NULL;
    }
    bool pending = false;
    if (outcome != napi_ok && napi_is_exception_pending(env, &pending) == napi_ok && pending) {
      /* No JavaScript frame to rethrow into: report it as Node does for its
       * own callbacks ('uncaughtException', or exit with the stack). */
      napi_value exception;
      if (napi_get_and_clear_last_exception(env, &exception) == napi_ok) {
        napi_fatal_exception(env, exception);
      }
    }
  }
  napi_close_handle_scope(env, scope);
}

/* Returns the watcher behind `this`, or NULL after throwing. */
static watcher *unwrap_this(napi_env env, napi_callback_info info, const char *method) {
  napi_value self;
  void *data = NULL;
  if (napi_get_cb_info(env, info, NULL, NULL, &self, NULL) != napi_ok ||
      napi_unwrap(env, self, &data) != napi_ok || data == NULL) {
    warren_throw_type(env, method, "this", "a Watcher returned by watch()");
    return NULL;
  }
  return data;
}

static napi_value watcher_close(napi_env env, napi_callback_info info) {
  watcher *w = unwrap_this(env, info, "Watcher.close");
  if (w == NULL || w->closing) return NULL;
  w->closing = true;
  napi_delete_reference(env, w->callback);
  w->callback = NULL;
  /* The async context stays valid until a running callback returns. */
  if (!w->in_callback) {
    napi_async_destroy(env, w->async_context);
    w->async_context = NULL;
  }
  napi_remove_env_cleanup_hook(env, on_env_cleanup, w);
  uv_close((uv_handle_t *)&w->poll, on_handle_closed);
  return NULL;
}

static napi_value watcher_ref(napi_env env, napi_callback_info info) {
  watcher *w = unwrap_this(env, info, "Watcher.ref");
  if (w != NULL && !w->closing) uv_ref((uv_handle_t *)&w->poll);
  return NULL;
}

static napi_value watcher_unref(napi_env env, napi_callback_info info) {
  watcher *w = unwrap_this(env, info, "Watcher.unref");
  if (w != NULL && !w->closing) uv_unref((uv_handle_t *)&w->poll);
  return NULL;
}

static napi_value watcher_has_ref(napi_env env, napi_callback_info info) {
  watcher *w = unwrap_this(env, info, "Watcher.hasRef");
  if (w == NULL) return NULL;
  napi_value result;
  NAPI_CALL(env,
            napi_get_boolean(env, !w->closing && uv_has_ref((uv_handle_t *)&w->poll), &result));
  return result;
}

static napi_value watcher_pause(napi_env env, napi_callback_info info) {
  watcher *w = unwrap_this(env, info, "Watcher.pause");
  if (w != NULL && !w->closing) uv_poll_stop(&w->poll);
  return NULL;
}

static napi_value watcher_resume(napi_env env, napi_callback_info info) {
  watcher *w = unwrap_this(env, info, "Watcher.resume");
  if (w == NULL || w->closing) return NULL;
  int status = uv_poll_start(&w->poll, UV_READABLE, on_poll);
  if (status != 0) return warren_throw_errno(env, -status, "uv_poll_start", NULL);
  return NULL;
}

/* The class is never exposed to JavaScript; only watch() constructs it. */
static napi_value watcher_constructor(napi_env env, napi_callback_info info) {
  napi_value self;
  NAPI_CALL(env, napi_get_cb_info(env, info, NULL, NULL, &self, NULL));
  return self;
}

/* watch(fd, callback) -> Watcher */
static napi_value watch(napi_env env, napi_callback_info info) {
  static const char fn[] = "watch";
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  if (!warren_arg_fd(env, argv[0], fn, "fd", &fd) ||
      !warren_arg_function(env, argv[1], fn, "callback")) {
    return NULL;
  }
  instance_data *data;
  napi_value constructor, wrapper, resource_name;
  uv_loop_t *loop;
  NAPI_CALL(env, napi_get_instance_data(env, (void **)&data));
  NAPI_CALL(env, napi_get_reference_value(env, data->watcher_constructor, &constructor));
  NAPI_CALL(env, napi_new_instance(env, constructor, 0, NULL, &wrapper));
  NAPI_CALL(env, napi_get_uv_event_loop(env, &loop));
  NAPI_CALL(env, napi_create_string_utf8(env, "warren.Watcher", NAPI_AUTO_LENGTH, &resource_name));

  watcher *w = calloc(1, sizeof *w);
  if (w == NULL) return warren_throw_errno(env, ENOMEM, "calloc", NULL);
  w->env = env;
  /* uv_poll_init also makes the fd non-blocking. It registers nothing when it
   * fails, so the struct can simply be freed. */
  int status = uv_poll_init(loop, &w->poll, fd);
  if (status != 0) {
    free(w);
    return warren_throw_errno(env, -status, "uv_poll_init", NULL);
  }
  status = uv_poll_start(&w->poll, UV_READABLE, on_poll);
  if (status != 0 || napi_create_reference(env, argv[1], 1, &w->callback) != napi_ok ||
      napi_async_init(env, wrapper, resource_name, &w->async_context) != napi_ok ||
      napi_wrap(env, wrapper, w, on_wrapper_finalized, NULL, NULL) != napi_ok ||
      napi_add_env_cleanup_hook(env, on_env_cleanup, w) != napi_ok) {
    /* Unwind whatever succeeded; the Watcher object never reaches JS. */
    if (w->callback != NULL) napi_delete_reference(env, w->callback);
    if (w->async_context != NULL) napi_async_destroy(env, w->async_context);
    void *unwrapped;
    (void)napi_remove_wrap(env, wrapper, &unwrapped);
    napi_remove_env_cleanup_hook(env, on_env_cleanup, w);
    w->wrapper_finalized = true;
    w->closing = true;
    uv_close((uv_handle_t *)&w->poll, on_handle_closed);
    if (status != 0) return warren_throw_errno(env, -status, "uv_poll_start", NULL);
    return warren_throw_napi_failure(env, "setting up a watcher");
  }
  return wrapper;
}

static void free_instance_data(napi_env env, void *data, void *hint) {
  (void)hint;
  instance_data *instance = data;
  napi_delete_reference(env, instance->watcher_constructor);
  free(instance);
}

bool warren_init_poll(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"close", NULL, watcher_close, NULL, NULL, NULL, napi_default_method, NULL},
      {"ref", NULL, watcher_ref, NULL, NULL, NULL, napi_default_method, NULL},
      {"unref", NULL, watcher_unref, NULL, NULL, NULL, napi_default_method, NULL},
      {"hasRef", NULL, watcher_has_ref, NULL, NULL, NULL, napi_default_method, NULL},
      {"pause", NULL, watcher_pause, NULL, NULL, NULL, napi_default_method, NULL},
      {"resume", NULL, watcher_resume, NULL, NULL, NULL, napi_default_method, NULL},
  };
  napi_value constructor;
  if (napi_define_class(env, "Watcher", NAPI_AUTO_LENGTH, watcher_constructor, NULL,
                        sizeof methods / sizeof methods[0], methods, &constructor) != napi_ok) {
    return false;
  }
  instance_data *instance = calloc(1, sizeof *instance);
  if (instance == NULL) return false;
  if (napi_create_reference(env, constructor, 1, &instance->watcher_constructor) != napi_ok ||
      napi_set_instance_data(env, instance, free_instance_data, NULL) != napi_ok) {
    free(instance);
    return false;
  }
  return warren_export_function(env, exports, "watch", watch);
}
