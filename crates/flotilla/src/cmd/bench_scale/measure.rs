//! The measuring phases of `flotilla bench scale`, in order: agents register, services
//! are created, every task runs, the server's memory and CPU in a quiet window, the
//! UpdateService → new task latency, and ListTasks paging.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};

use super::report::p50_p99;
use super::*;

#[allow(clippy::too_many_lines, clippy::cast_precision_loss)]
pub(super) async fn measure(
    args: &ScaleBenchArgs,
    run: &Run<'_>,
    api: &Api,
    sim: &Arc<Sim>,
    cluster: &str,
    agents: &mut tokio::task::JoinSet<()>,
    fig: &mut Figures,
) -> anyhow::Result<()> {
    // 1. Every agent registers and starts polling.
    let t = Instant::now();
    run.phase("registering instances", args.instances as u64);
    for n in 0..args.instances {
        agents.spawn(agent(sim.clone(), n));
    }
    let mut stall = Stall::new();
    loop {
        run.check()?;
        let n = sim.registered.load(Ordering::Relaxed);
        run.bar.set_position(n);
        if n as usize >= args.instances {
            break;
        }
        if stall.stuck(n as i64, run.stall) {
            bail!(
                "registration stalled at {n}/{} instances for {} s{}",
                args.instances,
                run.stall.as_secs(),
                sim.first_error()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fig.register_secs = t.elapsed().as_secs_f64();
    run.log(&format!(
        "{} instances registered in {:.1} s ({:.0}/s); polls of {} s over {} connections",
        args.instances,
        fig.register_secs,
        args.instances as f64 / fig.register_secs.max(1e-9),
        fig.wait_seconds,
        fig.poll_slots
    ));

    // 2. The services.
    let t = Instant::now();
    run.phase("creating services", args.services as u64);
    let counts: Vec<usize> = (0..args.services)
        .map(|i| args.tasks / args.services + usize::from(i < args.tasks % args.services))
        .collect();
    let mut creates = tokio::task::JoinSet::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counts = Arc::new(counts);
    for _ in 0..8 {
        let (api, next, counts, cluster) = (
            api.clone(),
            next.clone(),
            counts.clone(),
            cluster.to_owned(),
        );
        creates.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&desired) = counts.get(i) else {
                    return anyhow::Ok(());
                };
                api.call(
                    "CreateService",
                    &json!({
                        "cluster": cluster, "serviceName": service_name(i),
                        "taskDefinition": "scale", "desiredCount": desired, "launchType": "EC2",
                        "placementStrategy": [
                            {"type": "spread", "field": "attribute:ecs.availability-zone"},
                            {"type": "spread", "field": "instanceId"}
                        ],
                        "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 100}
                    }),
                )
                .await?;
            }
        });
    }
    loop {
        run.check()?;
        run.bar
            .set_position((next.load(Ordering::Relaxed) as u64).min(args.services as u64));
        if creates.is_empty() {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(200), creates.join_next()).await {
            Ok(Some(Ok(Ok(())))) | Err(_) => {}
            Ok(Some(Ok(Err(e)))) => return Err(run.explain(e).await),
            Ok(Some(Err(e))) => bail!("a CreateService worker failed: {e}"),
            Ok(None) => break,
        }
    }
    fig.create_secs = t.elapsed().as_secs_f64();
    run.log(&format!(
        "{} services created in {:.1} s",
        args.services, fig.create_secs
    ));

    // 3. Every task runs.
    run.phase("tasks RUNNING", args.tasks as u64);
    let mut stall = Stall::new();
    let target = args.tasks as i64;
    loop {
        run.check()?;
        let v = run
            .call(api, "DescribeClusters", &json!({"clusters": [cluster]}))
            .await?;
        let c = &v["clusters"][0];
        let (running, pending) = (
            int_of(&c["runningTasksCount"]),
            int_of(&c["pendingTasksCount"]),
        );
        let reported = sim.running.load(Ordering::Relaxed);
        run.bar
            .set_position(u64::try_from(running.max(0)).unwrap_or(0));
        if running == target && pending == 0 && reported == target {
            break;
        }
        if stall.stuck(running.max(reported), run.stall) {
            bail!(
                "tasks stalled at {running}/{target} RUNNING ({pending} pending, {reported} reported by agents, {} handed to agents) for {} s{}",
                sim.seen.load(Ordering::Relaxed),
                run.stall.as_secs(),
                sim.first_error()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    fig.running_secs = t.elapsed().as_secs_f64();
    run.log(&format!(
        "{} tasks RUNNING {:.1} s after the first CreateService ({:.0}/s)",
        args.tasks,
        fig.running_secs,
        args.tasks as f64 / fig.running_secs.max(1e-9)
    ));

    // 4. Memory, and CPU while only the agents poll.
    let pid = run.server.pid.map(|p| p.to_string());
    let t = Instant::now();
    if args.settle_seconds > 0.0 {
        run.phase("settling", 1);
        run.sleep(Duration::from_secs_f64(args.settle_seconds))
            .await?;
    }
    if let Some(pid) = pid
        .as_deref()
        .filter(|_| args.settle_max_extra_seconds > 0.0)
    {
        // The controller may still be finishing time-driven work (rollouts complete 40 s
        // after their tasks start): wait for its thread to go quiet, within bounds.
        run.phase("waiting for the server's writer thread to go quiet", 1);
        let until = Instant::now() + Duration::from_secs_f64(args.settle_max_extra_seconds);
        loop {
            let a = thread_ticks(pid);
            run.sleep(Duration::from_secs(5)).await?;
            let busy = match (a, thread_ticks(pid)) {
                (Some(w0), Some(w1)) => w1.saturating_sub(w0) as f64 / 100.0 / 5.0 * 100.0,
                _ => 0.0,
            };
            if busy < 5.0 {
                break;
            }
            if Instant::now() >= until {
                run.log(&format!(
                    "the writer thread still used {busy:.0} % of a core after the extra settle time; measuring anyway"
                ));
                break;
            }
        }
    }
    fig.settle_secs = t.elapsed().as_secs_f64();
    run.phase("quiet window: only the agents poll", 1);
    let sample = |pid: &Option<String>| pid.as_deref().and_then(proc_sample);
    let threads0 = pid.as_deref().and_then(thread_ticks);
    let before = sample(&pid);
    let me0 = proc_sample("self");
    let (polls0, changed0) = (
        sim.polls.load(Ordering::Relaxed),
        sim.changed.load(Ordering::Relaxed),
    );
    let t = Instant::now();
    run.sleep(Duration::from_secs_f64(args.quiet_seconds))
        .await?;
    let secs = t.elapsed().as_secs_f64();
    let after = sample(&pid);
    let threads1 = pid.as_deref().and_then(thread_ticks);
    let me1 = proc_sample("self");
    fig.quiet_secs = secs;
    fig.quiet_polls = sim.polls.load(Ordering::Relaxed) - polls0;
    fig.quiet_changed = sim.changed.load(Ordering::Relaxed) - changed0;
    let pct = |a: Option<ProcSample>, b: Option<ProcSample>| match (a, b) {
        (Some(a), Some(b)) => (b.cpu_ticks - a.cpu_ticks) as f64 / 100.0 / secs * 100.0,
        _ => f64::NAN,
    };
    fig.cpu_pct = pct(before, after);
    if let (Some(w0), Some(w1)) = (threads0, threads1) {
        // The rest is the process's CPU less the writer's: a thread that exited within
        // the window (tokio's idle blocking threads do) is gone from /proc/<pid>/task,
        // but its ticks still count in the process's.
        fig.writer_cpu_pct = w1.saturating_sub(w0) as f64 / 100.0 / secs * 100.0;
        fig.api_cpu_pct = (fig.cpu_pct - fig.writer_cpu_pct).max(0.0);
    }
    fig.bench_cpu_pct = pct(me0, me1);
    fig.rss = after.unwrap_or_default();
    fig.store_bytes = run.server.store_bytes();
    run.log(&format!(
        "server RSS {:.1} MB; CPU {:.2} % of a core over {secs:.1} s (writer thread {:.2} %, API threads {:.2} %; {} polls answered, {} with a change)",
        fig.rss.rss_kb as f64 / 1024.0,
        fig.cpu_pct,
        fig.writer_cpu_pct,
        fig.api_cpu_pct,
        fig.quiet_polls,
        fig.quiet_changed
    ));

    // 5. A change to a service, acted on.
    run.phase("UpdateService → new task", args.updates as u64);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut desired: Vec<usize> = (0..args.services)
        .map(|i| args.tasks / args.services + usize::from(i < args.tasks % args.services))
        .collect();
    let mut expected_running = target;
    let mut consecutive_timeouts = 0;
    for u in 0..args.updates {
        run.check()?;
        if consecutive_timeouts >= 3 {
            run.log(&format!(
                "3 updates in a row timed out: {} of {} updates measured",
                fig.appeared.len(),
                args.updates
            ));
            break;
        }
        let s = usize::try_from(rng.next() % args.services as u64).unwrap_or(0);
        let name = service_name(s);
        *sim.track.lock().unwrap_or_else(PoisonError::into_inner) = Some(Track {
            group: controlplane::task::service_group(&name),
            seen: None,
            running: None,
        });
        let want = desired[s] + 1;
        let t0 = Instant::now();
        run.call(
            api,
            "UpdateService",
            &json!({"cluster": cluster, "service": name, "desiredCount": want}),
        )
        .await?;
        fig.update_answer.push(micros(t0.elapsed()));
        desired[s] = want;
        expected_running += 1;
        let mut appeared: Option<Duration> = None;
        // DescribeServices counts a service's tasks by scanning the cluster's: probe
        // often at first, then less, so the bench's own probing stays a small load.
        let mut probe_every = Duration::from_millis(20);
        let mut next_probe = Instant::now();
        loop {
            run.check()?;
            let (seen, running) = {
                let track = sim.track.lock().unwrap_or_else(PoisonError::into_inner);
                track.as_ref().map_or((None, None), |t| (t.seen, t.running))
            };
            if appeared.is_none() {
                if let Some(at) = seen {
                    appeared = Some(at.saturating_duration_since(t0));
                } else if Instant::now() >= next_probe {
                    probe_every = (probe_every * 5 / 4).min(Duration::from_millis(250));
                    next_probe = Instant::now() + probe_every;
                    let v = run
                        .call(
                            api,
                            "DescribeServices",
                            &json!({"cluster": cluster, "services": [name]}),
                        )
                        .await?;
                    let svc = &v["services"][0];
                    if int_of(&svc["runningCount"]) + int_of(&svc["pendingCount"]) >= want as i64 {
                        appeared = Some(t0.elapsed());
                    }
                }
            }
            if let (Some(_), Some(seen), Some(running)) = (appeared, seen, running) {
                fig.seen.push(micros(seen.saturating_duration_since(t0)));
                fig.running
                    .push(micros(running.saturating_duration_since(t0)));
                consecutive_timeouts = 0;
                break;
            }
            if t0.elapsed() > UPDATE_DEADLINE {
                fig.timeouts += 1;
                consecutive_timeouts += 1;
                run.log(&format!(
                    "update {u}: service {name} showed no new RUNNING task within {} s",
                    UPDATE_DEADLINE.as_secs()
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        fig.appeared
            .push(micros(appeared.unwrap_or(UPDATE_DEADLINE)));
        run.bar.set_position(u as u64 + 1);
    }
    *sim.track.lock().unwrap_or_else(PoisonError::into_inner) = None;
    for v in [
        &mut fig.appeared,
        &mut fig.seen,
        &mut fig.running,
        &mut fig.update_answer,
    ] {
        v.sort_unstable();
    }
    run.log(&format!(
        "{} updates: new task appeared {} ({} timed out)",
        args.updates,
        p50_p99(&fig.appeared, 1),
        fig.timeouts
    ));

    // 6. Listing a cluster with many tasks.
    let pages = expected_running.max(0).unsigned_abs().div_ceil(100);
    run.phase(
        "ListTasks pages + DescribeTasks",
        pages.min(args.list_pages as u64),
    );
    let mut token: Option<String> = None;
    for page in 0..args.list_pages {
        run.check()?;
        let mut body = json!({"cluster": cluster, "maxResults": 100});
        if let Some(t) = &token {
            body["nextToken"] = json!(t);
        }
        let t = Instant::now();
        let v = run.call(api, "ListTasks", &body).await?;
        fig.list.push(micros(t.elapsed()));
        let arns: Vec<Value> = v["taskArns"].as_array().cloned().unwrap_or_default();
        fig.listed += arns.len();
        if !arns.is_empty() {
            let t = Instant::now();
            let d = run
                .call(
                    api,
                    "DescribeTasks",
                    &json!({"cluster": cluster, "tasks": arns}),
                )
                .await?;
            fig.describe.push(micros(t.elapsed()));
            let described = d["tasks"].as_array().map_or(0, Vec::len);
            if described != arns.len() {
                bail!(
                    "DescribeTasks returned {described} of the {} tasks ListTasks listed",
                    arns.len()
                );
            }
        }
        run.bar.set_position(page as u64 + 1);
        token = v["nextToken"].as_str().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    fig.list.sort_unstable();
    fig.describe.sort_unstable();
    run.log(&format!(
        "{} ListTasks pages ({} tasks): {}",
        fig.list.len(),
        fig.listed,
        p50_p99(&fig.list, 2)
    ));
    Ok(())
}
