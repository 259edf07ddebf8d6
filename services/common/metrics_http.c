/*
 * metrics_http.c - the /metrics endpoint of metrics_http.h on evhttp.
 */
#include "services/common/metrics_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "rpc/log.h"
#include "rpc/loop.h"
#include "services/common/config.h"
#include "rpc/metrics.h"

struct svc_metrics {
	rpc_server *srv;
	rpc_loop *loop;
	struct evhttp *http;
	int port;
};

static void reply_text(struct evhttp_request *req, int code, const char *reason,
		       const char *type, const char *body, size_t len)
{
	struct evbuffer *out = evbuffer_new();

	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
	if (out != NULL && body != NULL)
		evbuffer_add(out, body, len);
	evhttp_send_reply(req, code, reason, out);
	if (out != NULL)
		evbuffer_free(out);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	svc_metrics *m = arg;
	const char *uri = evhttp_request_get_uri(req);
	rpc_text t = { 0 };
	size_t len = 0;
	char *text;

	if (uri == NULL || (strcmp(uri, "/metrics") != 0 &&
			    strncmp(uri, "/metrics?", 9) != 0)) {
		static const char nf[] = "not found: the metrics are at /metrics\n";

		reply_text(req, HTTP_NOTFOUND, "Not Found", "text/plain; charset=utf-8",
			   nf, sizeof(nf) - 1);
		return;
	}
	rpc_server_metrics_write(m->srv, &t);
	rpc_process_metrics_write(&t);
	text = rpc_text_take(&t, &len);
	if (text == NULL) {
		static const char oom[] = "out of memory\n";

		reply_text(req, HTTP_INTERNAL, "Internal Server Error",
			   "text/plain; charset=utf-8", oom, sizeof(oom) - 1);
		return;
	}
	reply_text(req, HTTP_OK, "OK", "text/plain; version=0.0.4; charset=utf-8",
		   text, len);
	free(text);
}

int svc_metrics_port_for(long long configured, long long grpc_port)
{
	if (configured < 0)
		return -1;
	if (configured > 0)
		return configured <= 65535 ? (int)configured : -1;
	if (grpc_port <= 0 || grpc_port + 1000 > 65535)
		return -1;
	return (int)(grpc_port + 1000);
}

svc_metrics *svc_metrics_start(rpc_server *srv, const char *host, int port,
			       char *err, size_t errlen)
{
	svc_metrics *m = calloc(1, sizeof(*m));
	struct evhttp_bound_socket *sock;

	if (m == NULL) {
		snprintf(err, errlen, "metrics: out of memory");
		return NULL;
	}
	m->srv = srv;
	m->loop = rpc_loop_new("metrics");
	m->http = m->loop ? evhttp_new(rpc_loop_base(m->loop)) : NULL;
	if (m->http == NULL) {
		snprintf(err, errlen, "metrics: out of memory");
		goto fail;
	}
	/* A scrape is one small GET: anything bigger or slower is not one. */
	evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_max_headers_size(m->http, 8192);
	evhttp_set_max_body_size(m->http, 0);
	evhttp_set_timeout(m->http, 10);
	evhttp_set_gencb(m->http, on_request, m);
	sock = evhttp_bind_socket_with_handle(m->http, host, (ev_uint16_t)port);
	if (sock == NULL) {
		snprintf(err, errlen, "metrics: cannot listen on %s:%d", host, port);
		goto fail;
	}
	{
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		evutil_socket_t fd = evhttp_bound_socket_get_fd(sock);

		if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
			m->port = ss.ss_family == AF_INET6 ?
				ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) :
				ntohs(((struct sockaddr_in *)&ss)->sin_port);
	}
	if (rpc_loop_start(m->loop) != 0) {
		snprintf(err, errlen, "metrics: cannot start its thread");
		goto fail;
	}
	return m;
fail:
	if (m->http)
		evhttp_free(m->http);
	rpc_loop_free(m->loop);
	free(m);
	return NULL;
}

int svc_metrics_port(const svc_metrics *m)
{
	return m->port;
}

void svc_metrics_stop(svc_metrics *m)
{
	if (m == NULL)
		return;
	rpc_loop_stop(m->loop);
	evhttp_free(m->http);
	rpc_loop_free(m->loop);
	free(m);
}

int svc_metrics_open(rpc_server *srv, const char *host, long long configured,
		     int grpc_port, svc_metrics **out)
{
	int port = svc_metrics_port_for(configured, grpc_port);
	char err[300], addr[300];

	*out = NULL;
	if (port < 0) {
		rpc_log(RPC_LOG_INFO, "metrics", "off (METRICS_PORT)");
		return 0;
	}
	*out = svc_metrics_start(srv, host, port, err, sizeof(err));
	if (*out == NULL) {
		rpc_log(RPC_LOG_ERROR, "metrics", "%s (METRICS_PORT)", err);
		return -1;
	}
	cfg_host_port(host, svc_metrics_port(*out), addr, sizeof(addr));
	rpc_log(RPC_LOG_INFO, "metrics", "http://%s/metrics", addr);
	return 0;
}
