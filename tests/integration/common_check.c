/*
 * common_check - exercises services/common (pg.c, redis.c) against the
 * real PostgreSQL and Redis that test_common.py starts, and which it stops
 * and restarts when this program asks (one line on stdout, "PAUSE <what>",
 * answered by one line on stdin once done).
 *
 *   common_check DB_PORT REDIS_PORT SCRATCH_DIR
 *
 * Prints "ok <step>" per step and exits 0, or prints "FAIL ..." and exits 1.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rpc/log.h"
#include "rpc/loop.h"
#include "services/common/pg.h"
#include "services/common/redis.h"

#define CHECK(cond)                                                        \
	do {                                                               \
		if (!(cond)) {                                             \
			printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
			fflush(stdout);                                    \
			exit(1);                                           \
		}                                                          \
	} while (0)

#define MIGRATORS 8

static char *conninfo;
static char migdir[512];

static void ok(const char *step)
{
	printf("ok %s\n", step);
	fflush(stdout);
}

/* Asks the test to do something (stop/start a server) and waits. */
static void pause_for(const char *what)
{
	char line[64];

	printf("PAUSE %s\n", what);
	fflush(stdout);
	CHECK(fgets(line, sizeof(line), stdin) != NULL);
}

static void write_file(const char *name, const char *text)
{
	char path[600];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", migdir, name);
	f = fopen(path, "w");
	CHECK(f != NULL);
	fputs(text, f);
	fclose(f);
}

static const char *scalar(PGconn *c, const char *sql, char *buf, size_t cap)
{
	rpc_code code;
	char msg[128];
	PGresult *r = pg_exec(c, sql, 0, NULL, &code, msg, sizeof(msg), NULL);

	CHECK(r != NULL && PQntuples(r) == 1);
	snprintf(buf, cap, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	return buf;
}

struct migrator {
	pthread_t thread;
	int rc;
	char err[256];
};

static void *migrate_main(void *arg)
{
	struct migrator *m = arg;

	m->rc = pg_migrate(conninfo, "race", migdir, m->err, sizeof(m->err));
	return NULL;
}

/* Several replicas starting at once: every file applied exactly once. */
static void test_migrate_race(void)
{
	struct migrator m[MIGRATORS];
	pg_pool *p;
	PGconn *c;
	rpc_code code;
	char msg[128], buf[64], err[256];

	CHECK(mkdir(migdir, 0700) == 0 || errno == EEXIST);
	/* The sleep widens the window in which the others must wait. */
	write_file("001_init.sql",
		   "SELECT pg_sleep(0.3);\n"
		   "CREATE TABLE runs (id serial PRIMARY KEY, note text);\n");
	write_file("002_seed.sql", "INSERT INTO runs (note) VALUES ('seed');\n");
	write_file("README", "not a migration\n");
	write_file("7_wrong.txt", "SELECT 1/0;\n");
	for (int i = 0; i < MIGRATORS; i++)
		CHECK(pthread_create(&m[i].thread, NULL, migrate_main, &m[i]) == 0);
	for (int i = 0; i < MIGRATORS; i++) {
		pthread_join(m[i].thread, NULL);
		if (m[i].rc != 0)
			printf("migrator %d: %s\n", i, m[i].err);
		CHECK(m[i].rc == 0);
	}
	p = pg_pool_new(conninfo, "race", 1);
	CHECK(p != NULL);
	c = pg_acquire(p, 2000, &code, msg, sizeof(msg));
	CHECK(c != NULL);
	CHECK(strcmp(scalar(c, "SELECT count(*) FROM runs", buf, sizeof(buf)), "1") == 0);
	CHECK(strcmp(scalar(c, "SELECT string_agg(version::text, ',' ORDER BY version) "
			    "FROM schema_migrations", buf, sizeof(buf)), "1,2") == 0);

	/* A new file later: only it runs. A failing one leaves nothing
	 * behind and is not recorded. */
	write_file("010_more.sql", "INSERT INTO runs (note) VALUES ('ten');\n");
	write_file("011_broken.sql",
		   "CREATE TABLE half (id int);\nSELECT no_such_function();\n");
	CHECK(pg_migrate(conninfo, "race", migdir, err, sizeof(err)) == -1);
	CHECK(strstr(err, "011_broken.sql") != NULL);
	CHECK(strcmp(scalar(c, "SELECT count(*) FROM runs", buf, sizeof(buf)), "2") == 0);
	CHECK(strcmp(scalar(c, "SELECT count(*) FROM schema_migrations", buf,
			    sizeof(buf)), "3") == 0);
	CHECK(strcmp(scalar(c, "SELECT count(*) FROM pg_tables WHERE "
			    "schemaname = 'race' AND tablename = 'half'", buf,
			    sizeof(buf)), "0") == 0);
	write_file("011_broken.sql", "CREATE TABLE half (id int);\n");
	CHECK(pg_migrate(conninfo, "race", migdir, err, sizeof(err)) == 0);
	CHECK(strcmp(scalar(c, "SELECT count(*) FROM schema_migrations", buf,
			    sizeof(buf)), "4") == 0);
	/* Two files with one number are refused before anything runs. */
	write_file("011_again.sql", "SELECT 1;\n");
	CHECK(pg_migrate(conninfo, "race", migdir, err, sizeof(err)) == -1);
	CHECK(strstr(err, "same number") != NULL);
	pg_release(p, c);
	pg_pool_free(p);
	ok("migrate_race");
}

static void test_pg_errors(void)
{
	pg_pool *p = pg_pool_new(conninfo, "errs", 2);
	PGconn *c, *c2, *c3;
	PGresult *r;
	rpc_code code;
	char msg[128], st[6], err[256];
	const char *email[] = { "a@example.com" };
	const char *bad_uuid[] = { "x'; DROP TABLE people; --" };
	const char *missing[] = { "999" };

	CHECK(p != NULL);
	CHECK(mkdir(migdir, 0700) == 0 || errno == EEXIST);
	CHECK(pg_migrate(conninfo, "errs", "/nonexistent-dir", err, sizeof(err)) == -1);
	c = pg_acquire(p, 2000, &code, msg, sizeof(msg));
	CHECK(c != NULL);
	/* search_path is the pool's schema. */
	r = pg_exec(c, "CREATE SCHEMA IF NOT EXISTS errs", 0, NULL, &code, msg,
		    sizeof(msg), st);
	PQclear(r);
	r = pg_exec(c, "CREATE TABLE people (id serial PRIMARY KEY, "
		    "email text NOT NULL UNIQUE, age int CHECK (age >= 0))",
		    0, NULL, &code, msg, sizeof(msg), st);
	CHECK(r != NULL);
	PQclear(r);
	r = pg_exec(c, "CREATE TABLE pets (owner int REFERENCES people(id))",
		    0, NULL, &code, msg, sizeof(msg), st);
	CHECK(r != NULL);
	PQclear(r);

	r = pg_exec(c, "INSERT INTO people (email) VALUES ($1)", 1, email,
		    &code, msg, sizeof(msg), st);
	CHECK(r != NULL && code == RPC_OK);
	PQclear(r);
	r = pg_exec(c, "INSERT INTO people (email) VALUES ($1)", 1, email,
		    &code, msg, sizeof(msg), st);
	CHECK(r == NULL && code == RPC_ALREADY_EXISTS && strcmp(st, "23505") == 0);
	/* No values in a message meant for callers. */
	CHECK(strstr(msg, "example.com") == NULL);
	r = pg_exec(c, "SELECT $1::uuid", 1, bad_uuid, &code, msg, sizeof(msg), st);
	CHECK(r == NULL && code == RPC_INVALID_ARGUMENT && strncmp(st, "22", 2) == 0);
	CHECK(strstr(msg, "DROP") == NULL);
	r = pg_exec(c, "INSERT INTO pets (owner) VALUES ($1)", 1, missing, &code,
		    msg, sizeof(msg), st);
	CHECK(r == NULL && code == RPC_FAILED_PRECONDITION && strcmp(st, "23503") == 0);
	r = pg_exec(c, "INSERT INTO people (email, age) VALUES ('b', -1)", 0, NULL,
		    &code, msg, sizeof(msg), st);
	CHECK(r == NULL && code == RPC_FAILED_PRECONDITION && strcmp(st, "23514") == 0);
	r = pg_exec(c, "SELECT no_such_column FROM people", 0, NULL, &code, msg,
		    sizeof(msg), st);
	CHECK(r == NULL && code == RPC_INTERNAL);
	CHECK(strstr(msg, "no_such_column") == NULL);
	r = pg_exec(c, "SET statement_timeout = 50", 0, NULL, &code, msg,
		    sizeof(msg), st);
	PQclear(r);
	r = pg_exec(c, "SELECT pg_sleep(2)", 0, NULL, &code, msg, sizeof(msg), st);
	CHECK(r == NULL && code == RPC_DEADLINE_EXCEEDED && strcmp(st, "57014") == 0);
	r = pg_exec(c, "RESET statement_timeout", 0, NULL, &code, msg,
		    sizeof(msg), st);
	PQclear(r);

	/* A failed transaction does not commit. */
	CHECK(pg_begin(c) == RPC_OK);
	r = pg_exec(c, "INSERT INTO people (email) VALUES ($1)", 1, email,
		    &code, msg, sizeof(msg), st);
	CHECK(r == NULL);
	CHECK(pg_commit(c) == RPC_ABORTED);
	/* Returned inside a transaction: closed, not reused. */
	CHECK(pg_begin(c) == RPC_OK);
	pg_release(p, c);
	c2 = pg_acquire(p, 2000, &code, msg, sizeof(msg));
	CHECK(c2 != NULL && PQtransactionStatus(c2) == PQTRANS_IDLE);
	/* The pool is bounded. */
	c3 = pg_acquire(p, 2000, &code, msg, sizeof(msg));
	CHECK(c3 != NULL);
	{
		long long t0 = rpc_now_ns();

		c = pg_acquire(p, 200, &code, msg, sizeof(msg));
		CHECK(c == NULL && code == RPC_RESOURCE_EXHAUSTED);
		CHECK(rpc_now_ns() - t0 >= 150000000LL);
	}
	pg_release(p, c3);
	pg_release(p, c2);
	CHECK(pg_ping(p));
	pg_pool_free(p);
	ok("pg_errors");
}

/* The database goes away and comes back: UNAVAILABLE meanwhile, then
 * working again with no new pool, including for a connection that sat
 * idle in the pool across the restart. */
static void test_pg_recovery(void)
{
	pg_pool *p = pg_pool_new(conninfo, "errs", 2);
	PGconn *c;
	PGresult *r;
	rpc_code code;
	char msg[128];

	CHECK(p != NULL);
	c = pg_acquire(p, 2000, &code, msg, sizeof(msg));
	CHECK(c != NULL);
	pg_release(p, c);                 /* stays idle in the pool */
	pause_for("stop-postgres");
	c = pg_acquire(p, 2000, &code, msg, sizeof(msg));
	CHECK(c == NULL && code == RPC_UNAVAILABLE);
	CHECK(strcmp(msg, "database unavailable") == 0);
	CHECK(!pg_ping(p));
	pause_for("start-postgres");
	CHECK(pg_ping(p));
	c = pg_acquire(p, 2000, &code, msg, sizeof(msg));
	CHECK(c != NULL);
	r = pg_exec(c, "SELECT 1", 0, NULL, &code, msg, sizeof(msg), NULL);
	CHECK(r != NULL);
	PQclear(r);
	pg_release(p, c);
	pause_for("restart-postgres");
	c = pg_acquire(p, 2000, &code, msg, sizeof(msg));
	CHECK(c != NULL);
	r = pg_exec(c, "SELECT 1", 0, NULL, &code, msg, sizeof(msg), NULL);
	CHECK(r != NULL);
	PQclear(r);
	pg_release(p, c);
	pg_pool_free(p);
	ok("pg_recovery");
}

static rds_script append_script = {
	.source = "return redis.call('APPEND', KEYS[1], ARGV[1])",
};

static void test_redis(int port)
{
	rds_pool *p = rds_pool_new("127.0.0.1", port, NULL, 2, 300);
	redisContext *c, *c2, *c3;
	redisReply *r;
	rpc_code code;
	const char *set[] = { "SET", "cc:k", "a\0b" };
	size_t setlen[] = { 3, 4, 3 };
	const char *args[] = { "cc:k", "!" };
	const char *flush[] = { "SCRIPT", "FLUSH" };
	const char *blpop[] = { "BLPOP", "cc:empty", "5" };

	CHECK(p != NULL);
	CHECK(rds_ping(p));
	c = rds_acquire(p, 1000, &code);
	CHECK(c != NULL);
	r = rds_command(c, 3, set, setlen, &code);
	CHECK(r != NULL && r->type == REDIS_REPLY_STATUS);
	freeReplyObject(r);
	r = rds_eval(c, &append_script, 1, 2, args, NULL, &code);
	CHECK(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 4);
	freeReplyObject(r);
	CHECK(strlen(append_script.sha) == 40);
	/* The server forgets the script: loaded again, transparently. */
	r = rds_command(c, 2, flush, NULL, &code);
	CHECK(r != NULL);
	freeReplyObject(r);
	r = rds_eval(c, &append_script, 1, 2, args, NULL, &code);
	CHECK(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 5);
	freeReplyObject(r);
	/* An error reply is a reply. */
	r = rds_command(c, 1, (const char *[]){ "NOSUCHCOMMAND" }, NULL, &code);
	CHECK(r != NULL && r->type == REDIS_REPLY_ERROR && code == RPC_OK);
	freeReplyObject(r);
	/* A command that outlives the timeout: UNAVAILABLE, connection
	 * dropped at release. */
	r = rds_command(c, 3, blpop, NULL, &code);
	CHECK(r == NULL && code == RPC_UNAVAILABLE && c->err != 0);
	rds_release(p, c);
	c2 = rds_acquire(p, 1000, &code);
	c3 = rds_acquire(p, 1000, &code);
	CHECK(c2 != NULL && c3 != NULL && c2->err == 0 && c3->err == 0);
	CHECK(rds_acquire(p, 100, &code) == NULL && code == RPC_RESOURCE_EXHAUSTED);
	rds_release(p, c2);
	rds_release(p, c3);

	pause_for("stop-redis");
	CHECK(!rds_ping(p));
	c = rds_acquire(p, 1000, &code);
	CHECK(c == NULL && code == RPC_UNAVAILABLE);
	pause_for("start-redis");
	CHECK(rds_ping(p));
	c = rds_acquire(p, 1000, &code);
	CHECK(c != NULL);
	/* A fresh server has no scripts: NOSCRIPT → reload. */
	r = rds_eval(c, &append_script, 1, 2, args, NULL, &code);
	CHECK(r != NULL && r->type == REDIS_REPLY_INTEGER);
	freeReplyObject(r);
	rds_release(p, c);
	rds_pool_free(p);
	ok("redis");
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: common_check DB_PORT REDIS_PORT SCRATCH_DIR\n");
		return 2;
	}
	/* The JSON log sink writes stdout, which carries the conversation
	 * with the test: logging stays off. */
	rpc_log_set_sink(NULL, NULL, RPC_LOG_ERROR);
	snprintf(migdir, sizeof(migdir), "%s/migrations", argv[3]);
	conninfo = pg_conninfo("127.0.0.1", atoi(argv[1]), "estore", "", "estore");
	CHECK(conninfo != NULL);
	test_migrate_race();
	test_pg_errors();
	test_pg_recovery();
	test_redis(atoi(argv[2]));
	free(conninfo);
	printf("done\n");
	return 0;
}
