"""Batch inference on vLLM, multi-turn through `history` (ms-swift's `inference_vllm` example)."""

from swiftcli import ModelType, get_default_template_type, get_template, get_vllm_engine, inference_vllm

if __name__ == "__main__":  # vLLM spawns worker processes
    model_type = ModelType.smollm2_135m_instruct
    llm_engine = get_vllm_engine(model_type)
    template_type = get_default_template_type(model_type)
    template = get_template(template_type, llm_engine.hf_tokenizer)
    # an interface like `transformers.GenerationConfig`
    llm_engine.generation_config.max_new_tokens = 256

    request_list = [{'query': '你好!'}, {'query': '浙江的省会在哪？'}]
    resp_list = inference_vllm(llm_engine, template, request_list)
    for request, resp in zip(request_list, resp_list):
        print(f"query: {request['query']}")
        print(f"response: {resp['response']}")

    history1 = resp_list[1]['history']
    request_list = [{'query': '这有什么好吃的', 'history': history1}]
    resp_list = inference_vllm(llm_engine, template, request_list)
    for request, resp in zip(request_list, resp_list):
        print(f"query: {request['query']}")
        print(f"response: {resp['response']}")
        print(f"history: {resp['history']}")
