/*
 * setsockopt(SO_SNDBUFFORCE) for Node.js, which has no binding for a TCP socket's
 * send buffer.
 *
 * Why the HBONE connections need it (src/hbone/send-buffer.ts): Node's http2 stops
 * reading its socket while a write to it is pending, so two Node peers that both send
 * more than the kernel buffers between them hold each wait for the other to read, for
 * ever. A send buffer that holds all the peer's connection window lets a write finish
 * at once, so this side keeps reading and the other side's writes drain.
 *
 * FORCE, not plain SO_SNDBUF: the latter is capped at net.core.wmem_max (4 MiB or less),
 * far below a 16 MiB window, and setting it turns the kernel's own growth off, so a
 * capped value would be worse than none. FORCE needs CAP_NET_ADMIN, which the ztunnel
 * has (it writes iptables rules). The kernel doubles the value for its bookkeeping.
 *
 * Built by scripts/build-native.js when a C compiler and Node's headers are present.
 */
#include <node_api.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

static napi_value raise_send_buffer(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd = -1, bytes = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 ||
      napi_get_value_int32(env, argv[1], &bytes) != napi_ok || bytes <= 0) {
    napi_throw_type_error(env, "EINVAL", "raiseSendBuffer(fd, bytes) needs a socket file descriptor and a positive size");
    return NULL;
  }
  int value = bytes;
  int got = 0;
  socklen_t len = sizeof(got);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &value, sizeof(value)) != 0 ||
      getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &got, &len) != 0) {
    int err = errno;
    napi_throw_error(env, err == EPERM ? "EPERM" : "ESOCKOPT", strerror(err));
    return NULL;
  }
  napi_value result;
  napi_create_int32(env, got, &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "raiseSendBuffer", NAPI_AUTO_LENGTH, raise_send_buffer, NULL, &fn);
  napi_set_named_property(env, exports, "raiseSendBuffer", fn);
  return exports;
}
