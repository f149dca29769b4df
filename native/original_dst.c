/*
 * getsockopt(SO_ORIGINAL_DST) for Node.js, which has no binding for it.
 *
 * The ztunnel must learn where a captured connection was going before the node's DNAT
 * rewrote it. Without this, the only pure-Node way is reading /proc/net/nf_conntrack,
 * whose cost grows with the conntrack table (milliseconds per read at thousands of
 * entries, far more on a busy node). The kernel answers this socket option in O(1)
 * from the same conntrack entry; Istio's ztunnel uses it too.
 *
 * Built by scripts/build-native.js when a C compiler and Node's headers are present;
 * src/ztunnel/original-dst-sockopt.ts falls back to the conntrack reader otherwise.
 */
#include <node_api.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80 /* linux/netfilter_ipv4.h */
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80 /* linux/netfilter_ipv6/ip6_tables.h */
#endif

/*
 * IPv6 connections (DNAT'ed by ip6tables) are answered at SOL_IPV6; IPv4 ones at
 * SOL_IP, also when they arrive on a dual-stack socket as v4-mapped addresses.
 */
static int is_native_ipv6(int fd) {
  struct sockaddr_in6 local;
  socklen_t len = sizeof(local);
  memset(&local, 0, sizeof(local));
  if (getsockname(fd, (struct sockaddr *)&local, &len) != 0) return 0;
  return local.sin6_family == AF_INET6 && !IN6_IS_ADDR_V4MAPPED(&local.sin6_addr);
}

static napi_value original_dst(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "EINVAL", "originalDst(fd) needs a socket file descriptor");
    return NULL;
  }
  /* One path for both families: only the level, the option and the address layout differ. */
  int v6 = is_native_ipv6(fd);
  union { struct sockaddr_in v4; struct sockaddr_in6 v6; } addr;
  socklen_t len = v6 ? sizeof(addr.v6) : sizeof(addr.v4);
  memset(&addr, 0, sizeof(addr));
  int rc = getsockopt(fd, v6 ? SOL_IPV6 : SOL_IP, v6 ? IP6T_SO_ORIGINAL_DST : SO_ORIGINAL_DST, &addr, &len);
  const void *bytes = v6 ? (const void *)&addr.v6.sin6_addr : (const void *)&addr.v4.sin_addr;
  int port = ntohs(v6 ? addr.v6.sin6_port : addr.v4.sin_port);
  char ip[INET6_ADDRSTRLEN];
  if (rc == 0 && inet_ntop(v6 ? AF_INET6 : AF_INET, bytes, ip, sizeof(ip)) == NULL) rc = -1;
  if (rc != 0) {
    int err = errno;
    /* ENOENT: no conntrack entry (the connection was not NATed). */
    napi_throw_error(env, err == ENOENT ? "ENOENT" : "ESOCKOPT", strerror(err));
    return NULL;
  }
  napi_value result, vip, vport;
  napi_create_object(env, &result);
  napi_create_string_utf8(env, ip, NAPI_AUTO_LENGTH, &vip);
  napi_create_int32(env, port, &vport);
  napi_set_named_property(env, result, "ip", vip);
  napi_set_named_property(env, result, "port", vport);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "originalDst", NAPI_AUTO_LENGTH, original_dst, NULL, &fn);
  napi_set_named_property(env, exports, "originalDst", fn);
  return exports;
}
