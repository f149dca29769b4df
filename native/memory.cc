/*
 * Gives memory back to the kernel after a burst of connections is gone.
 *
 * Measured (docs/reliability.md): after thousands of tunnelled connections close, a
 * quiet ztunnel keeps its RSS at the peak. Most of it is V8's old space: the
 * connections' objects are garbage, but an idle process allocates too little to
 * trigger the full collections that would free and uncommit those pages. The rest is
 * native memory (OpenSSL, nghttp2, libuv) that glibc keeps in its arenas.
 * Isolate::LowMemoryNotification is V8's API for "collect everything and shrink";
 * malloc_trim(0) returns glibc's free pages. Both are called by
 * src/ztunnel/memory-reclaim.ts, rarely (the collection pauses the event loop).
 *
 * C++ because V8 has no C API for this; built per machine against the running Node's
 * headers (it is not N-API-stable, which is why it is not part of weft_native.node).
 */
#include <node_api.h>
#include <v8.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

static napi_value low_memory_notification(napi_env env, napi_callback_info) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  if (isolate != nullptr) isolate->LowMemoryNotification();
  napi_value result;
  napi_get_undefined(env, &result);
  return result;
}

/* Returns whether glibc released anything; false where there is no glibc. */
static napi_value malloc_trim_js(napi_env env, napi_callback_info) {
  int released = 0;
#ifdef __GLIBC__
  released = malloc_trim(0);
#endif
  napi_value result;
  napi_get_boolean(env, released != 0, &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "lowMemoryNotification", NAPI_AUTO_LENGTH, low_memory_notification, nullptr, &fn);
  napi_set_named_property(env, exports, "lowMemoryNotification", fn);
  napi_create_function(env, "mallocTrim", NAPI_AUTO_LENGTH, malloc_trim_js, nullptr, &fn);
  napi_set_named_property(env, exports, "mallocTrim", fn);
  return exports;
}
