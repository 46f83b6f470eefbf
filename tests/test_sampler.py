import torch

from selfalign.generation import SamplingParams, make_sampler
from selfalign.models.loading import load_policy

PROMPTS = ["1+2=", "11+22=", "3+4=", "123+456="]


def test_n_samples_per_prompt_in_order_with_token_counts(tiny_model_dir):
    policy = load_policy(str(tiny_model_dir))
    gens = make_sampler("hf", policy, batch_size=4).generate(
        PROMPTS, SamplingParams(n=3, temperature=1.0, max_new_tokens=12, seed=1)
    )
    assert [(g.prompt_index, g.sample_index) for g in gens] == [(i, j) for i in range(4) for j in range(3)]
    for g in gens:
        assert g.n_prompt_tokens == len(policy.encode_prompt(PROMPTS[g.prompt_index]))
        assert 1 <= g.n_tokens <= 12
        assert g.finished or g.n_tokens == 12


def test_seeded_sampling_is_deterministic_and_seed_matters(tiny_model_dir):
    policy = load_policy(str(tiny_model_dir))
    sampler = make_sampler("hf", policy, batch_size=8)
    a = sampler.generate(PROMPTS, SamplingParams(n=2, temperature=1.0, max_new_tokens=10, seed=5))
    b = sampler.generate(PROMPTS, SamplingParams(n=2, temperature=1.0, max_new_tokens=10, seed=5))
    c = sampler.generate(PROMPTS, SamplingParams(n=2, temperature=1.0, max_new_tokens=10, seed=6))
    assert [g.text for g in a] == [g.text for g in b]
    assert [g.text for g in a] != [g.text for g in c]


def test_greedy_batched_equals_unbatched(tiny_model_dir):
    """Left padding and length bucketing must not change greedy outputs."""
    policy = load_policy(str(tiny_model_dir))
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=10)
    batched = make_sampler("hf", policy, batch_size=8).generate(PROMPTS, params)
    single = make_sampler("hf", policy, batch_size=1).generate(PROMPTS, params)
    assert [g.text for g in batched] == [g.text for g in single]


def test_stops_at_eos(tiny_model_dir):
    policy = load_policy(str(tiny_model_dir))
    eos = policy.tokenizer.eos_token_id
    # Make EOS the only likely token: the sampler must stop after one token and report it finished.
    boost = torch.zeros(len(policy.tokenizer))
    boost[eos] = 1e4
    policy.model.lm_head.register_forward_hook(lambda module, args, out: out + boost)
    gens = make_sampler("hf", policy).generate(PROMPTS, SamplingParams(max_new_tokens=10))
    assert all(g.finished and g.n_tokens == 1 and g.text == "" for g in gens)


def test_greedy_with_several_samples_repeats_the_greedy_response(tiny_model_dir):
    """HF refuses greedy decoding with num_return_sequences > 1; n greedy samples are n copies of the one."""
    sampler = make_sampler("hf", load_policy(str(tiny_model_dir)), batch_size=8)
    one = sampler.generate(PROMPTS, SamplingParams(n=1, temperature=0.0, max_new_tokens=10))
    three = sampler.generate(PROMPTS, SamplingParams(n=3, temperature=0.0, max_new_tokens=10))
    assert [g.text for g in three] == [g.text for g in one for _ in range(3)]
    assert [g.sample_index for g in three] == [0, 1, 2] * len(PROMPTS)


def test_decoding_threads_change_nothing_but_the_threads(tiny_model_dir, monkeypatch):
    policy = load_policy(str(tiny_model_dir))
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=10, seed=5)
    seen = []
    generate = policy.model.generate
    monkeypatch.setattr(policy.model, "generate", lambda **kw: seen.append(torch.get_num_threads()) or generate(**kw))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        default = make_sampler("hf", policy, batch_size=8).generate(PROMPTS, params)
        one = make_sampler("hf", policy, batch_size=8, threads=1).generate(PROMPTS, params)
        assert seen == [2, 1] and torch.get_num_threads() == 2  # restored for training
    finally:
        torch.set_num_threads(before)
    assert [g.token_ids for g in one] == [g.token_ids for g in default]
